#!/usr/bin/env bash
# The interval pipelines' streaming pass (pipelines/intervals.py), run as bash -o pipefail:
#   intervals.sh validate DECOMPRESS SOURCE OUT THREADS
#       decompress | validate > OUT                      (GTF, before gffread)
#   intervals.sh sort DECOMPRESS SOURCE OUT THREADS TMPDIR MEMORY LEVEL SORT-KEY...
#       decompress | validate | sort | header first | bgzip > OUT
# DECOMPRESS is bgzf, gzip or plain; the validator is awk -f "$PP_AWK" (validate.awk), its outputs
# named by PP_* variables. The header goes in when sort emits its first line (or ends empty): sort
# emits nothing before its input ends, so awk has finished writing the header by then. VCF lines
# arrive prefixed with their contig's rank in the header (the order bcftools and GATK expect),
# which is cut off again after the sort.
set -o pipefail -o errexit -o nounset
mode=$1 decompress=$2 src=$3 out=$4 threads=$5

read_text() {
  case $decompress in
    bgzf) bgzip -dc -@ "$threads" -- "$src" ;;
    gzip) gzip -dc -- "$src" ;;
    *) cat -- "$src" ;;
  esac
}

unrank() { if [ "$PP_KIND" = vcf ]; then cut -f2-; else cat; fi; }

case $mode in
  validate)
    read_text | awk -f "$PP_AWK" > "$out"
    ;;
  sort)
    tmpdir=$6 mem=$7 level=$8
    shift 8
    tab=$(printf '\t')
    read_text | awk -f "$PP_AWK" \
      | sort -s -t "$tab" -S "$mem" -T "$tmpdir" --parallel="$threads" "$@" \
      | unrank \
      | { if IFS= read -r first; then cat -- "$PP_HDR"; printf '%s\n' "$first"; cat; else cat -- "$PP_HDR"; fi; } \
      | bgzip -c -l "$level" -@ "$threads" > "$out"
    ;;
  *)
    echo "intervals.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
