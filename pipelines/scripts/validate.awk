# Validates the data lines of a VCF, BED-family or GFF text on its way to sort (run by pipelines/streaming.py).
# Reads the decompressed text on stdin; data lines to stdout, header lines to $PP_HDR (and their line
# numbers to $PP_HDRNR), the first error to $PP_ERR (exit 3), counts and contigs to $PP_STATS.
# With PP_STREAM=1 it also checks that the text is already in the order `sort -s` would give (by the
# format's sort keys, ties in input order) with every header line before the data, and writes header
# and data lines to stdout as the sorting path would write them; at the first line out of that order
# it stops with exit 4 ("unsorted" in $PP_STATS) and the caller sorts instead.
# mawk and gawk both run it; values arrive through ENVIRON so no path is parsed by awk -v.
BEGIN {
  FS = "\t"; hdr = ENVIRON["PP_HDR"]; hdrnr = ENVIRON["PP_HDRNR"]; err = ENVIRON["PP_ERR"]
  stats = ENVIRON["PP_STATS"]; kind = ENVIRON["PP_KIND"]; mincol = ENVIRON["PP_MINCOL"] + 0
  exact = ENVIRON["PP_EXACT"] + 0; sc = ENVIRON["PP_START"] + 0; ec = ENVIRON["PP_END"] + 0
  maxc = ENVIRON["PP_MAX"] + 0; OCTAL = " has a leading zero, which htslib reads as octal; write it without"
  isbed = kind == "bed"; isgff = kind == "gff"; isvcf = kind == "vcf"; stream = ENVIRON["PP_STREAM"] == "1"
  bytes = 0; cr = 0; unsorted = 0; pk = ""; pr = 0; ps = -1; pe = -1; r = 0; last = "\001"
  records = 0; blank = 0; browser = 0; fasta = 0; headers = 0; width = 0; maxend = 0; fail = 0
  printf "" > hdr; printf "" > hdrnr
  # The second part of a file split at a line boundary (intervals.sh) starts with the contig ranks of the
  # header at the top of the file; any ##contig line met after data is counted (then the file is not split)
  part2 = ENVIRON["PP_PART"] == "2"; late = 0
  if (part2 && isvcf) while ((getline id < ENVIRON["PP_RANKS"]) > 0) if (!(id in rank)) rank[id] = ++nrank
}
function bad(msg) { printf "line %d: %s\n", NR, msg > err; fail = 1; exit 3 }
function header() {
  if (stream) { if (records) disorder(); print }  # a header line after data: sorting moves it up
  headers++; print > hdr; print NR > hdrnr
}
function control(c,   i) { for (i = 0; i < 32; i++) if (sprintf("%c", i) == c) return sprintf("0x%02X", i); return "0x7F" }
function disorder() { unsorted = NR; exit 4 }
function q(s) { return "'" (length(s) > 40 ? substr(s, 1, 40) "..." : s) "'" }
# htslib reads coordinates with strtoll(base 0): "010" is octal 8 and "0x10" is 16. Only plain
# decimals without a leading zero mean the same to this validator and to tabix.
function notint(v, what, col) {
  if (v ~ /^0[0-9]+$/)
    bad(sprintf("%s %s in column %d%s", what, q(v), col, OCTAL))
  bad(sprintf("%s %s in column %d is not a non-negative integer", what, q(v), col))
}
# VCF INFO/END, found as htslib finds it (an INFO starting "END=", else the first ";END="); "." is no END.
function info_end(info, pos,   i, v) {
  if (substr(info, 1, 4) == "END=") i = 5
  else { i = index(info, ";END="); if (!i) return -1; i += 5 }
  v = substr(info, i); i = index(v, ";"); if (i) v = substr(v, 1, i - 1)
  if (v == ".") return -1
  if (v !~ /^[1-9][0-9]*$/) {
    if (v ~ /^0[0-9]+$/) bad(sprintf("INFO/END %s%s", q(v), OCTAL))
    bad(sprintf("INFO/END %s in column 8 is not a positive integer", q(v)))
  }
  if (length(v) < length(pos) || (length(v) == length(pos) && v < pos))
    bad(sprintf("INFO/END %s is before POS %s", v, pos))
  return v
}
{
  if (stream) bytes += length($0) + 1
  if ($0 ~ /[\000-\010\013-\037\177]/) {  # CR or another control character (NUL too): the rare slow path
    if (index($0, "\r")) { cr++; sub(/\r$/, "") }
    # htslib takes text holding control characters for binary and refuses to index it; pysam and tabix
    # cut a record at a NUL
    if (!infasta && match($0, /[\000-\010\013\014\016-\037\177]/))
      bad(sprintf("column %d: a control character (byte %s) in text, where only tab may be", \
                  split(substr($0, 1, RSTART), cut, "\t"), control(substr($0, RSTART, 1))))
  }
  if (infasta) { fasta++; next }
  if (NF <= 1 && $0 ~ /^[ \t]*$/) { blank++; next }
  if ($0 ~ /^[#tb]/) {
    if (substr($0, 1, 1) == "#") {
      if (isgff && $0 ~ /^##FASTA/) { infasta = 1; fasta++; next }
      if (isvcf && $0 ~ /^##contig=<ID=/) {
        if (records || part2) late++
        id = substr($0, 14); sub(/[,>].*$/, "", id)
        if (!(id in rank)) rank[id] = ++nrank
      }
      header(); next
    }
    if (isbed && ($0 ~ /^track([ \t]|$)/ || $0 ~ /^browser([ \t]|$)/)) { browser++; header(); next }
  }
  if (NF != width) {
    if (NF < mincol || (exact && NF != exact)) {
      hint = (index($0, " ") > 0) ? " (space-delimited? columns must be separated by tabs)" : ""
      want = exact ? "exactly " exact : "at least " mincol
      bad(sprintf("%d tab-separated column(s), expected %s%s", NF, want, hint))
    }
    if (width) bad(sprintf("%d columns, but line %d has %d (ragged rows)", NF, wline, width))
    width = NF; wline = NR
  }
  if ($1 != last) {  # a string comparison (last is a string): names such as 1 and 1.0 differ
    if ($1 == "") bad("empty sequence name in column 1")
    last = $1 ""; newcontig = 1
    if (!(last in seen)) { seen[last] = 1; contigs[++ncontig] = last }
    if (isvcf) r = (last in rank) ? rank[last] : 999999999  # undeclared contigs last, by name
  }
  s = $sc
  if (isvcf) {
    if (s !~ /^(0|[1-9][0-9]*)$/) notint(s, "start", sc)
    sn = s + 0; en = sn + length($4) - 1
    if (en < sn) en = sn
    big = s  # the value the user wrote, for a message
    if (index($8, "END=") && (v = info_end($8, s)) != -1) { big = e = v; en = v + 0 }  # the end tabix indexes
    else e = en
  } else {
    e = $ec
    if ((s "\t" e) !~ /^(0|[1-9][0-9]*)\t(0|[1-9][0-9]*)$/) {  # one match for both: runs millions of times
      if (s !~ /^(0|[1-9][0-9]*)$/) notint(s, "start", sc)
      notint(e, "end", ec)
    }
    sn = s + 0; en = e + 0
    if (sn > en) bad(sprintf("start %s is greater than end %s", s, e))
    if (isgff && sn < 1) bad("start 0: GFF coordinates are 1-based")
    if (isbed && en == 0) bad("start 0 and end 0: tabix cannot index a zero-length interval at the very start")
  }
  if (en > maxend) {
    if (length(s) > 15 || length(e) > 15 || en > maxc)
      bad(sprintf("coordinate %s is beyond what a tabix index can address (%d)", (isvcf ? big : e), maxc))
    maxend = en
  }
  records++
  if (stream) {  # sort's keys: BED name, start, end; GFF name, start; VCF header rank, name, POS
    if (newcontig) {
      if (records > 1 && (r < pr || (r == pr && last < pk))) disorder()
      pk = last; pr = r; ps = -1; newcontig = 0
    }
    if (sn < ps || (isbed && sn == ps && en < pe)) disorder()
    ps = sn; pe = en
    print
  } else if (isvcf) printf "%d\t%s\n", r, $0  # sorted in header contig order, the rank cut off after
  else print
}
END {
  close(hdr); close(hdrnr)  # complete before stdout closes, so the header is whole when sort emits
  if (fail) exit 3
  if (unsorted) { printf "unsorted\t%d\n", unsorted > stats; exit 4 }
  printf "unsorted\t0\nbytes\t%d\ncr\t%d\nlines\t%d\nlate\t%d\n", bytes, cr, NR, late > stats
  printf "records\t%d\nblank\t%d\ntrack\t%d\nfasta\t%d\nheaders\t%d\nmaxend\t%d\ncolumns\t%d\n", \
    records, blank, browser, fasta, headers, maxend, width > stats
  for (i = 1; i <= ncontig; i++) print "contig\t" contigs[i] > stats
}
