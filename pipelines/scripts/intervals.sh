#!/usr/bin/env bash
# The interval pipelines' streaming pass (pipelines/intervals.py), run as bash -o pipefail:
#   intervals.sh validate DECOMPRESS SOURCE OUT THREADS
#       decompress | validate > OUT                      (GTF, before gffread)
#   intervals.sh check DECOMPRESS SOURCE OUT THREADS
#       decompress | validate and check the order        (a BGZF input whose bytes may be the output)
#   intervals.sh stream DECOMPRESS SOURCE OUT THREADS TMPDIR MEMORY LEVEL
#       decompress | validate and check the order | bgzip > OUT     (exit 4 at the first line out of order)
#   intervals.sh sort DECOMPRESS SOURCE OUT THREADS TMPDIR MEMORY LEVEL SORT-KEY...
#       decompress | validate | sort | header first | bgzip > OUT
# DECOMPRESS is bgzf, gzip or plain (awk reads a plain file itself, no cat); the validator is
# awk -f "$PP_AWK" (validate.awk), its outputs named by PP_* variables; check and stream set
# PP_STREAM=1. The header goes in when sort emits its first line (or ends empty): sort emits
# nothing before its input ends, so awk has finished writing the header by then. VCF lines arrive
# at sort prefixed with their contig's rank in the header (the order bcftools and GATK expect),
# which is cut off again after the sort.
set -o pipefail -o errexit -o nounset
mode=$1 decompress=$2 src=$3 out=$4 threads=$5

validate() {
  case $decompress in
    bgzf) bgzip -dc -@ "$threads" -- "$src" | awk -f "$PP_AWK" ;;
    gzip) gzip -dc -- "$src" | awk -f "$PP_AWK" ;;
    *) awk -f "$PP_AWK" < "$src" ;;
  esac
}

header_first() { if IFS= read -r first; then cat -- "$PP_HDR"; printf '%s\n' "$first"; cat; else cat -- "$PP_HDR"; fi; }

case $mode in
  validate)
    validate > "$out"
    ;;
  check)
    PP_STREAM=1 validate > /dev/null
    ;;
  stream)
    level=$8
    PP_STREAM=1 validate | bgzip -c -l "$level" -@ "$threads" > "$out"
    ;;
  sort)
    tmpdir=$6 mem=$7 level=$8
    shift 8
    tab=$(printf '\t')
    if [ "$PP_KIND" = vcf ]; then
      validate | sort -s -t "$tab" -S "$mem" -T "$tmpdir" --parallel="$threads" "$@" | cut -f2- \
        | header_first | bgzip -c -l "$level" -@ "$threads" > "$out"
    else
      validate | sort -s -t "$tab" -S "$mem" -T "$tmpdir" --parallel="$threads" "$@" \
        | header_first | bgzip -c -l "$level" -@ "$threads" > "$out"
    fi
    ;;
  *)
    echo "intervals.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
