#!/usr/bin/env bash
# The interval pipelines' streaming pass (run by pipelines/streaming.py), run as bash -o pipefail:
#   intervals.sh validate DECOMPRESS SOURCE OUT THREADS
#       decompress | validate > OUT                      (GTF, before gffread)
#   intervals.sh check DECOMPRESS SOURCE OUT THREADS
#       decompress | validate and check the order        (a BGZF input whose bytes may be the output)
#   intervals.sh stream DECOMPRESS SOURCE OUT THREADS TMPDIR MEMORY LEVEL
#       decompress | validate and check the order | bgzip > OUT     (exit 4 at the first line out of order)
#   intervals.sh sort DECOMPRESS SOURCE OUT THREADS TMPDIR MEMORY LEVEL SPLIT SORT-KEY...
#       decompress | validate | sort | header first | bgzip > OUT
#       SPLIT > 0 (a plain file, a byte offset just after a newline): two validators at once, one on
#       the bytes before SPLIT, one on the rest (outputs named by PP_*2, PP_PART=2), whose lines reach
#       sort after the first part's through a FIFO, so sort sees the same lines in the same order.
# DECOMPRESS is bgzf, gzip or plain (awk reads a plain file itself, no cat); the validator is
# awk -f "$PP_AWK" (validate.awk), its outputs named by PP_* variables; check and stream set
# PP_STREAM=1. The header goes in when sort emits its first line (or ends empty): sort emits
# nothing before its input ends, so awk has finished writing the header by then. VCF lines arrive
# at sort prefixed with their contig's rank in the header (the order bcftools and GATK expect),
# which is cut off again after the sort. The output is compressed by `compress`: bgzindex where PP_BGZINDEX
# names it (bgzip's bytes, and tabix's index of them written in the same pass: pipelines/tabix_index.py),
# else bgzip.
set -o pipefail -o errexit -o nounset
mode=$1 decompress=$2 src=$3 out=$4 threads=$5

validate() {
  case $decompress in
    bgzf) bgzip -dc -@ "$threads" -- "$src" | awk -f "$PP_AWK" ;;
    gzip) gzip -dc -- "$src" | awk -f "$PP_AWK" ;;
    *) awk -f "$PP_AWK" < "$src" ;;
  esac
}

compress() {
  if [ -n "${PP_BGZINDEX:-}" ]; then
    "$PP_BGZINDEX" compress "$level" "$threads" "$PP_PRESET" "$PP_INDEXKIND" "$PP_INDEX" "$PP_REPORT"
  else
    bgzip -c -l "$level" -@ "$threads"
  fi
}

headers=("$PP_HDR")
header_first() { if IFS= read -r first; then cat -- "${headers[@]}"; printf '%s\n' "$first"; cat; else cat -- "${headers[@]}"; fi; }

# The first part's lines, then the second part's once its validator has finished (always opening the
# FIFO, so its writer never waits for ever); exit status of the first part's validator.
validate_first_then_second() {
  local status=0
  head -c "$split" -- "$src" | awk -f "$PP_AWK" || status=$?
  cat -- "$fifo"
  return "$status"
}

sort_lines() {
  if [ "$split" -gt 0 ]; then
    validate_first_then_second
  else
    validate
  fi | sort -s -t "$tab" -S "$mem" -T "$tmpdir" --parallel="$threads" "$@"
}

case $mode in
  validate)
    validate > "$out"
    ;;
  check)
    PP_STREAM=1 validate > /dev/null
    ;;
  stream)
    level=$8
    PP_STREAM=1 validate | compress > "$out"
    ;;
  sort)
    tmpdir=$6 mem=$7 level=$8 split=$9
    shift 9
    tab=$(printf '\t')
    if [ "$split" -gt 0 ]; then
      fifo=$tmpdir/part2.fifo part2=$tmpdir/part2.txt
      headers+=("$PP_HDR2")
      mkfifo -- "$fifo"
      ( status=0
        tail -c +"$((split + 1))" -- "$src" \
          | PP_HDR=$PP_HDR2 PP_HDRNR=$PP_HDRNR2 PP_ERR=$PP_ERR2 PP_STATS=$PP_STATS2 PP_PART=2 \
            awk -f "$PP_AWK" > "$part2" || status=$?
        cat -- "$part2" > "$fifo"
        rm -f -- "$part2"
        exit "$status" ) &
      second=$!
    fi
    status=0
    if [ "$PP_KIND" = vcf ]; then
      sort_lines "$@" | cut -f2- | header_first | compress > "$out" || status=$?
    else
      sort_lines "$@" | header_first | compress > "$out" || status=$?
    fi
    if [ "$split" -gt 0 ]; then
      wait "$second" || status=$?
      rm -f -- "$fifo"
    fi
    exit "$status"
    ;;
  *)
    echo "intervals.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
