/* bgzindex: bgzip a sorted text read from stdin and write its tabix index in the same pass.

   Built and run by pipelines/native.py (C99, linked with htslib: -lhts).

     bgzindex compress LEVEL THREADS PRESET KIND INDEX REPORT < TEXT > OUT

   Writes to stdout exactly the bytes `bgzip -c -l LEVEL -@ THREADS` writes for the same input (LEVEL -1:
   bgzip's default), and to INDEX exactly the bytes `tabix -p PRESET` (PRESET bed, vcf or gff; KIND csi:
   `--csi -m 14`) writes for that output, with `-S SKIP` where a bed's leading header lines include a
   track or browser line (SKIP: the number of leading header lines, as pipelines/intervals.py passes it).
   Then REPORT gets "KIND SKIP". tabix reads the compressed file back; here the index entries are taken
   as each line is written, from the same virtual offsets (htslib's on-the-fly indexing, as `samtools sort
   --write-index` uses it), so the text is compressed once and never decompressed.

   Where tabix would not index the text as asked (a record past what a TBI addresses, contigs not in
   blocks, positions out of order), INDEX and REPORT are not written, and the exit status is still 0: the
   compressed text is whole, and the caller runs tabix, which says why. Exit 1: usage, I/O or htslib
   error (a message on stderr).

     bgzindex compress LEVEL THREADS PRESET KIND INDEX REPORT CHECK FORMAT START END MIN EXACT < TEXT > OUT

   The same, and the text checked as it passes (FORMAT bed, vcf or gff; START, END: the 1-based columns
   of its coordinates; MIN: the fewest columns; EXACT: the only column count allowed, 0 for any): CHECK
   gets "ok" with the text's counts and contigs where pipelines/columnar.py's check would find the text
   in order with nothing to remark on (its `_checked_text` and `_in_order`), or "unsure LINE" as soon as
   a line is one it might judge otherwise (any byte that is not printable ASCII, tab or newline among
   them); each written whole under another name, then renamed. "ok" is only ever what the columnar check
   would say of the same text (tests/integration/test_bgzindex.py compares them); "unsure" only means
   that check runs.

     bgzindex index FILE THREADS PRESET KIND SKIP INDEX [CHECK FORMAT START END MIN EXACT]

   Writes to INDEX exactly the bytes `tabix -p PRESET [--csi -m 14] -S SKIP FILE` writes: tabix's own
   reading of the file, with the parse below, which reads no further along a line than the preset's
   columns. Exit 3, nothing written, where tabix would not index the file (the caller runs tabix, which
   says why). With CHECK, the text is checked as it is read, as compress checks it; "ok" counts the
   bytes as htslib's reader does (one a line for its newline, even a last line without one: the caller
   compares them with the text's size).

     bgzindex count FILE INDEX REGIONS

   Prints the number of records htslib's tabix reader returns for the regions of REGIONS (a BED file:
   contig, start, end; tabix -R's reading of it, where each region is one query) from FILE through
   INDEX: what `tabix -R REGIONS FILE | wc -l` prints, without printing the lines. Exit 1 where a query
   or the reading fails (a message on stderr).

   The record parse is htslib 1.16's tbx_parse1 (tbx.c, MIT licence), which htslib does not declare in
   its headers; pipelines/native.py compares this program's bytes with bgzip's and tabix's once a process
   and uses it only where they are equal. */

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <htslib/bgzf.h>
#include <htslib/hts.h>
#include <htslib/khash.h>
#include <htslib/kstring.h>
#include <htslib/tbx.h>

/* Exported by htslib (since 1.10) for on-the-fly indexing behind a threaded writer, not declared in its
   public headers: the entry's virtual offset is resolved once its block's compressed address is known. */
int bgzf_idx_push(BGZF *fp, hts_idx_t *hidx, int tid, hts_pos_t beg, hts_pos_t end, uint64_t offset,
                  int is_mapped);

KHASH_MAP_INIT_STR(names, int)

#define CHUNK (4 << 20)
#define REFUSED 3 /* bgzindex index: tabix would not index the text (no index written) */

typedef struct {
    int64_t beg, end;
    const char *name;
    size_t name_length;
} Interval;

static int fail(const char *format, const char *detail) {
    fprintf(stderr, "bgzindex: ");
    fprintf(stderr, format, detail);
    fputc('\n', stderr);
    return 1;
}

/* strtoll(text, end, 0), with a quick path for what it reads as plain decimal (a first digit 1-9, or a lone
   0; at most 18 digits, so no overflow): anything else, spaces, signs, octal, hex, goes to strtoll. */
static long long number(const char *text, char **end) {
    const char *at = text;
    if (*at >= '1' && *at <= '9') {
        long long value = 0;
        while (*at >= '0' && *at <= '9' && at - text < 18) value = value * 10 + (*at++ - '0');
        if (!(*at >= '0' && *at <= '9')) {
            *end = (char *)at;
            return value;
        }
    } else if (*at == '0' && !(at[1] >= '0' && at[1] <= '9') && at[1] != 'x' && at[1] != 'X') {
        *end = (char *)at + 1;
        return 0;
    }
    return strtoll(text, end, 0);
}

/* htslib 1.16's tbx_parse1 on one line (NUL-terminated at `length`; column 8 is briefly cut at its end
   for a VCF's INFO/END): 0 with the interval, -1 where tabix would skip the line as unparsable. */
static int parse(const tbx_conf_t *conf, int length, char *line, Interval *intv) {
    int i, b = 0, id = 1;
    /* the last column the preset reads: the line's rest changes nothing (tbx_parse1 walks it all) */
    int last = conf->sc > conf->bc ? conf->sc : conf->bc;
    if ((conf->preset & 0xffff) == TBX_GENERIC && conf->ec > last) last = conf->ec;
    if ((conf->preset & 0xffff) == TBX_VCF && last < 8) last = 8;
    char *s, *ss = NULL, *se = NULL;
    intv->beg = intv->end = -1;
    for (i = 0; i <= length; ++i) {
        if (line[i] != '\t' && line[i] != 0) continue;
        if (id == conf->sc) {
            ss = line + b;
            se = line + i;
        } else if (id == conf->bc) {
            intv->beg = intv->end = number(line + b, &s);
            if (s == line + b) return -1;
            if (!(conf->preset & TBX_UCSC)) --intv->beg;
            else ++intv->end;
            if (intv->beg < 0) intv->beg = 0;
            if (intv->end < 1) intv->end = 1;
        } else if ((conf->preset & 0xffff) == TBX_GENERIC) {
            if (id == conf->ec) {
                intv->end = number(line + b, &s);
                if (s == line + b) return -1;
            }
        } else if ((conf->preset & 0xffff) == TBX_VCF) {
            if (id == 4) {
                if (b < i) intv->end = intv->beg + (i - b);
            } else if (id == 8) { /* INFO/END, where it is past POS */
                int c = line[i];
                line[i] = 0;
                s = strstr(line + b, "END=");
                if (s == line + b) s += 4;
                else if (s) {
                    s = strstr(line + b, ";END=");
                    if (s) s += 5;
                }
                if (s && *s != '.') {
                    long long end = number(s, &s);
                    if (end > intv->beg) intv->end = end;
                }
                line[i] = (char)c;
            }
        }
        b = i + 1;
        if (++id > last) break;
    }
    if (ss == NULL || se == NULL || intv->beg < 0 || intv->end < 0) return -1;
    intv->name = ss;
    intv->name_length = (size_t)(se - ss);
    return 0;
}

/* tabix's reading of a VCF ##contig length (tbx.c adjust_max_ref_len_vcf), for a CSI's depth. */
static void contig_length(const char *line, int64_t *longest) {
    const char *at;
    if (strncmp(line, "##contig", 8) != 0) return;
    at = strstr(line + 8, "length");
    if (!at) return;
    for (at += 6; *at == ' ' || *at == '='; at++) {}
    int64_t length = strtoll(at, NULL, 10);
    if (*longest < length) *longest = length;
}

static int header_line(const char *line, size_t length, int bed, int *track) {
    if (length > 0 && line[0] == '#') return 1;
    if (!bed) return 0;
    for (int i = 0; i < 2; i++) {
        const char *word = i ? "browser" : "track";
        size_t n = strlen(word);
        if (length >= n && memcmp(line, word, n) == 0 && (length == n || line[n] == ' ' || line[n] == '\t')) {
            *track = 1;
            return 1;
        }
    }
    return 0;
}

/* The columnar check of a text as it is compressed (`compress ... CHECK`): each line judged as
   pipelines/columnar.py judges it, keeping only what deciding "in order, nothing to remark on" needs. */
typedef struct {
    const char *path;
    char format; /* 'b' bed, 'v' vcf, 'g' gff */
    int start_column, end_column, min_columns, exact_columns, wanted, columns;
    int sure, in_header;
    int64_t lines, records, headers, track, maxend, bytes;
    int64_t last_start, last_end, last_rank;
    size_t contig_at, contig_length; /* the previous record's contig, in `contigs` */
    kstring_t contigs;               /* the contigs in order, one a line */
    khash_t(names) *declared;        /* VCF: the ##contig IDs, ranked by first appearance */
    int n_declared;
} Check;

#define TABIX_MAX (1LL << 32) /* pipelines/tabix_index.py TABIX_MAX: an end past it is the validator's */
#define MAX_WANTED 16

/* 0: printable ASCII, 1: tab, 2: anything else (the columnar check leaves such a line to the validator),
   3: '=' in a VCF (the end of an "END=" in a record, which the validator judges by htslib's rules) */
static unsigned char byte_class[256];

static int check_init(Check *ck, char **argv) {
    memset(ck, 0, sizeof *ck);
    ck->path = argv[0];
    if (strcmp(argv[1], "bed") == 0) ck->format = 'b';
    else if (strcmp(argv[1], "vcf") == 0) ck->format = 'v';
    else if (strcmp(argv[1], "gff") == 0) ck->format = 'g';
    else return -1;
    ck->start_column = atoi(argv[2]);
    ck->end_column = atoi(argv[3]);
    ck->min_columns = atoi(argv[4]);
    ck->exact_columns = atoi(argv[5]);
    int last = ck->start_column > ck->end_column ? ck->start_column : ck->end_column;
    ck->wanted = ck->format == 'v' && last < 4 ? 4 : last;
    if (ck->start_column < 1 || ck->end_column < 1 || ck->wanted > MAX_WANTED) return -1;
    for (int c = 0; c < 256; c++) byte_class[c] = (c >= 32 && c < 127) ? 0 : 2;
    byte_class['\t'] = 1;
    if (ck->format == 'v') byte_class['='] = 3;
    ck->sure = 1;
    ck->in_header = 1;
    ck->declared = kh_init(names);
    return ck->declared ? 0 : -1;
}

/* Written under a name of its own, then renamed: whoever reads CHECK finds it whole or not at all. */
static int check_write(const Check *ck, const char *text) {
    size_t n = strlen(ck->path);
    char *part = malloc(n + 6);
    if (!part) return -1;
    memcpy(part, ck->path, n);
    memcpy(part + n, ".part", 6);
    FILE *out = fopen(part, "w");
    int ok = out != NULL && fputs(text, out) >= 0;
    if (out && fclose(out) != 0) ok = 0;
    ok = ok && rename(part, ck->path) == 0;
    if (!ok) unlink(part);
    free(part);
    return ok ? 0 : -1;
}

static int check_unsure(Check *ck) {
    char said[64];
    ck->sure = 0;
    snprintf(said, sizeof said, "unsure %" PRId64 "\n", ck->lines);
    return check_write(ck, said);
}

/* A coordinate as the columnar check reads it: canonical decimal of at most 15 digits; -1 otherwise. */
static int64_t coordinate(const char *text, size_t length) {
    if (length == 0 || length > 15 || (text[0] == '0' && length > 1)) return -1;
    int64_t value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') return -1;
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

/* Bytewise order of two names, as LC_ALL=C sort (and Python's bytes) compare them. */
static int bytewise(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

/* A VCF contig's rank: its ##contig line's place, or after every declared one; -2 out of memory. */
static int64_t declared_rank(Check *ck, const char *name, size_t length) {
    char *key = malloc(length + 1);
    if (!key) return -2;
    memcpy(key, name, length);
    key[length] = 0;
    khint_t k = kh_get(names, ck->declared, key);
    free(key);
    return k == kh_end(ck->declared) ? ck->n_declared : kh_val(ck->declared, k);
}

/* A VCF header's ##contig=<ID=NAME,...>: NAME ranked, unless ranked already. -1 out of memory. */
static int declare(Check *ck, const char *line, size_t length) {
    static const char prefix[] = "##contig=<ID=";
    size_t n = sizeof prefix - 1, end = n;
    if (length < n || memcmp(line, prefix, n) != 0) return 0;
    while (end < length && line[end] != ',' && line[end] != '>') end++;
    char *key = malloc(end - n + 1);
    if (!key) return -1;
    memcpy(key, line + n, end - n);
    key[end - n] = 0;
    int absent;
    khint_t k = kh_put(names, ck->declared, key, &absent);
    if (absent < 0) { free(key); return -1; }
    if (absent) kh_val(ck->declared, k) = ck->n_declared++;
    else free(key);
    return 0;
}

/* One line (without its newline; `newline` whether it had one). -1 on an error of the check's own
   (memory, writing CHECK: the caller then ends the check, with no verdict, and the columnar check runs);
   a line the check cannot vouch for makes it unsure, and it says no more. */
static int check_line(Check *ck, const char *text, size_t length, int newline) {
    ck->lines++;
    ck->bytes += (int64_t)length + newline;
    if (!ck->sure) return 0;
    if (!newline || length == 0) return check_unsure(ck); /* no final newline; a blank line */
    const char *field[MAX_WANTED];
    size_t field_length[MAX_WANTED];
    int tabs = 0, wanted = ck->wanted;
    const char *begin = text;
    int track = 0, header = header_line(text, length, ck->format == 'b', &track);
    for (size_t i = 0; i < length; i++) {
        unsigned char c = byte_class[(unsigned char)text[i]];
        if (c == 0) continue;
        if (c == 2 || (c == 3 && !header && i >= 3 && memcmp(text + i - 3, "END", 3) == 0)) return check_unsure(ck);
        if (c == 3) continue;
        if (tabs < wanted) {
            field[tabs] = begin;
            field_length[tabs] = (size_t)(text + i - begin);
        }
        tabs++;
        begin = text + i + 1;
    }
    if (tabs < wanted) {
        field[tabs] = begin;
        field_length[tabs] = (size_t)(text + length - begin);
    }
    if (ck->format == 'g' && length >= 7 && memcmp(text, "##FASTA", 7) == 0) return check_unsure(ck);
    if (header) {
        if (!ck->in_header) return check_unsure(ck); /* a header line after data */
        ck->headers++;
        ck->track += text[0] != '#';
        return ck->format == 'v' ? declare(ck, text, length) : 0;
    }
    ck->in_header = 0;
    ck->records++;
    if (ck->records == 1) {
        ck->columns = tabs + 1;
        if (ck->columns < ck->min_columns || (ck->exact_columns && ck->columns != ck->exact_columns)
            || ck->columns < wanted)
            return check_unsure(ck);
    } else if (tabs + 1 != ck->columns) {
        return check_unsure(ck);
    }
    const char *name = field[0];
    size_t name_length = field_length[0];
    if (name_length == 0 || memchr(name, ' ', name_length)) return check_unsure(ck);
    int64_t start = coordinate(field[ck->start_column - 1], field_length[ck->start_column - 1]), end;
    if (start < 0) return check_unsure(ck);
    if (ck->format == 'v') {
        int64_t last = start + (int64_t)field_length[3] - 1;
        end = last > start ? last : start; /* (a line holding "END=" was found unsure above) */
    } else {
        end = coordinate(field[ck->end_column - 1], field_length[ck->end_column - 1]);
        if (end < 0 || start > end || (ck->format == 'g' ? start < 1 : end == 0)) return check_unsure(ck);
    }
    if (end > ck->maxend) ck->maxend = end;
    if (ck->maxend > TABIX_MAX) return check_unsure(ck);
    if (ck->records > 1 && name_length == ck->contig_length
        && memcmp(name, ck->contigs.s + ck->contig_at, name_length) == 0) {
        if (start < ck->last_start || (ck->format == 'b' && start == ck->last_start && end < ck->last_end))
            return check_unsure(ck);
    } else { /* a contig after the last in the sort's order (VCF: header rank, then name), or unsure */
        int64_t rank = ck->format == 'v' ? declared_rank(ck, name, name_length) : 0;
        if (rank == -2) return -1;
        if (ck->records > 1
            && (rank < ck->last_rank
                || (rank == ck->last_rank
                    && bytewise(name, name_length, ck->contigs.s + ck->contig_at, ck->contig_length) < 0)))
            return check_unsure(ck);
        ck->contig_at = ck->contigs.l;
        ck->contig_length = name_length;
        if (kputsn(name, name_length, &ck->contigs) < 0 || kputc('\n', &ck->contigs) < 0) return -1;
        ck->last_rank = rank;
    }
    ck->last_start = start;
    ck->last_end = end;
    return 0;
}

/* At the text's end: "ok" with the counts and contigs, unless a line made the check unsure. */
static int check_finish(Check *ck) {
    if (!ck->sure) return 0;
    if (ck->records == 0) return check_unsure(ck);
    kstring_t said = {0, 0, NULL};
    int status = ksprintf(&said, "ok\n%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %d %" PRId64 "\n",
                          ck->lines, ck->records, ck->headers, ck->track, ck->maxend, ck->columns, ck->bytes) < 0
                 || kputsn(ck->contigs.s, ck->contigs.l, &said) < 0 ? -1 : check_write(ck, said.s);
    free(said.s);
    return status;
}

typedef struct {
    BGZF *out;
    hts_idx_t *idx;
    tbx_conf_t conf;
    int fmt, min_shift, n_lvls, threads, bed, track;
    int in_header, indexing;
    int64_t header_lines, longest;
    khash_t(names) *ids;
    char **names;
    int n_names, names_room, last_tid;
    int64_t last_beg;
    Interval held; /* a record whose line ended a block, its push held back (push_held) */
    int held_tid;  /* -1: none held */
} State;

static int start_index(State *st) {
    int n_lvls = st->n_lvls;
    st->conf.line_skip = st->track ? (int32_t)st->header_lines : 0;
    if (st->fmt == HTS_FMT_CSI) { /* tabix's adjust_n_lvls, from the header's longest ##contig */
        int64_t size = 1LL << (st->min_shift + n_lvls * 3), longest = st->longest + 256;
        for (; longest > size; ++n_lvls, size <<= 3) {}
    }
    st->n_lvls = n_lvls;
    st->idx = hts_idx_init(0, st->fmt, (uint64_t)bgzf_tell(st->out), st->min_shift, n_lvls);
    if (!st->idx) return -1;
    st->in_header = 0;
    if (st->threads > 1 && bgzf_mt(st->out, st->threads, 256) < 0) return -1;
    return 0;
}

/* The reference id of `name`, numbered by first appearance as tabix numbers them; -1 out of memory. */
static int name_id(State *st, const char *name, size_t length, int *known) {
    if (st->last_tid >= 0) { /* the previous record's contig, as a sorted text's next record mostly is */
        const char *previous = st->names[st->last_tid];
        if (strncmp(previous, name, length) == 0 && previous[length] == 0) {
            *known = 1;
            return st->last_tid;
        }
    }
    char *key = malloc(length + 1);
    if (!key) return -1;
    memcpy(key, name, length);
    key[length] = 0;
    int absent;
    khint_t k = kh_put(names, st->ids, key, &absent);
    if (absent < 0) { free(key); return -1; }
    *known = !absent;
    if (!absent) { free(key); return kh_val(st->ids, k); }
    if (st->n_names == st->names_room) { /* twice the room: a scaffold assembly names 10^5 contigs */
        int room = st->names_room ? 2 * st->names_room : 64;
        char **grown = realloc(st->names, sizeof(char *) * (size_t)room);
        if (!grown) return -1;
        st->names = grown;
        st->names_room = room;
    }
    st->names[st->n_names] = key;
    kh_val(st->ids, k) = st->n_names;
    return st->n_names++;
}

/* The reference id a parsed record is indexed under; -1 where hts_idx_push would refuse it (indexing
   then stops: the caller leaves tabix to say why), -2 out of memory. */
static int accepted(State *st, const Interval *intv) {
    int known;
    int tid = name_id(st, intv->name, intv->name_length, &known);
    if (tid < 0) return -2;
    int64_t maxpos = 1LL << (st->min_shift + st->n_lvls * 3);
    if (intv->beg > maxpos || intv->end > maxpos || intv->end < intv->beg
        || (tid != st->last_tid && known) || (tid == st->last_tid && intv->beg < st->last_beg)) {
        st->indexing = 0;
        return -1;
    }
    st->last_tid = tid;
    st->last_beg = intv->beg;
    return tid;
}

/* The record held back at a block's end, pushed now: before the next line is written (the offset of
   that line's block's start, `ended` 0), or once the whole text is flushed (`ended` 1: the exact end). */
static int push_held(State *st, int ended) {
    if (st->held_tid < 0) return 0;
    int tid = st->held_tid;
    st->held_tid = -1;
    uint64_t at = (uint64_t)bgzf_tell(st->out);
    if (ended) return hts_idx_push(st->idx, tid, st->held.beg, st->held.end, at, 1) < 0 ? -1 : 0;
    return bgzf_idx_push(st->out, st->idx, tid, st->held.beg, st->held.end, at, 1) < 0 ? -1 : 0;
}

/* One line (without its newline; `newline` says whether it had one): written, and indexed as tabix
   would index it. */
static int line(State *st, char *text, size_t length, int newline) {
    if (st->in_header) {
        if (header_line(text, length, st->bed, &st->track)) {
            st->header_lines++;
            if (st->fmt == HTS_FMT_CSI && st->conf.preset == TBX_VCF && length > 0) {
                char keep = text[length];
                text[length] = 0;
                contig_length(text, &st->longest);
                text[length] = keep;
            }
            return bgzf_write(st->out, text, length + (size_t)newline) < 0 ? -1 : 0;
        }
        if (start_index(st) < 0) return -1;
    }
    if (push_held(st, 0) < 0) return -1;
    Interval intv;
    int parsed = -1;
    if (st->indexing && !(length > 0 && text[0] == st->conf.meta_char)) {
        size_t parsed_length = length > 0 && text[length - 1] == '\r' ? length - 1 : length; /* as getline */
        char keep = text[parsed_length];
        text[parsed_length] = 0;
        parsed = parse(&st->conf, (int)parsed_length, text, &intv);
        text[parsed_length] = keep;
    }
    int tid = parsed == 0 ? accepted(st, &intv) : -1;
    if (tid == -2) return -1;
    if (bgzf_write(st->out, text, length + (size_t)newline) < 0) return -1;
    if (tid < 0) return 0;
    if (st->threads > 1 && (bgzf_tell(st->out) & 0xffff) == 0) {
        /* the line filled its block: the offset it ends at is the next block's start, and a threaded
           writer resolves it only when that block is written, which at the text's end never is */
        st->held = intv;
        st->held_tid = tid;
        return 0;
    }
    return bgzf_idx_push(st->out, st->idx, tid, intv.beg, intv.end, (uint64_t)bgzf_tell(st->out), 1) < 0 ? -1 : 0;
}

/* The index finished at the text's end `end` (a virtual offset), with tabix's meta (its configuration and
   the contig names), saved to `index`. */
static int save_index(State *st, uint64_t end, const char *index) {
    if (hts_idx_finish(st->idx, end) != 0) return -1;
    size_t names_length = 0;
    for (int i = 0; i < st->n_names; i++) names_length += strlen(st->names[i]) + 1;
    uint8_t *meta = malloc(28 + names_length);
    if (!meta) return -1;
    int32_t conf[7] = {st->conf.preset, st->conf.sc, st->conf.bc, st->conf.ec, st->conf.meta_char,
                       st->conf.line_skip, (int32_t)names_length};
    memcpy(meta, conf, 28); /* as tabix writes it on a little-endian host (the sample check finds others) */
    size_t at = 28;
    for (int i = 0; i < st->n_names; i++) {
        size_t n = strlen(st->names[i]) + 1;
        memcpy(meta + at, st->names[i], n);
        at += n;
    }
    if (hts_idx_set_meta(st->idx, (uint32_t)at, meta, 0) < 0) { free(meta); return -1; }
    return hts_idx_save_as(st->idx, NULL, index, st->fmt) < 0 ? -1 : 0;
}

static int finish_index(State *st, const char *index, const char *report) {
    if (st->in_header) { /* no record: as tabix, an index from the text's end, at the depth it starts from */
        st->conf.line_skip = st->track ? (int32_t)st->header_lines : 0;
        st->idx = hts_idx_init(0, st->fmt, (uint64_t)bgzf_tell(st->out), st->min_shift, st->n_lvls);
        if (!st->idx) return -1;
    }
    if (save_index(st, (uint64_t)bgzf_tell(st->out), index) < 0) return -1;
    FILE *said = fopen(report, "w");
    if (!said) return -1;
    fprintf(said, "%s %d\n", st->fmt == HTS_FMT_CSI ? "csi" : "tbi", st->conf.line_skip);
    return fclose(said) == 0 ? 0 : -1;
}

/* The preset's tabix configuration and the index kind's shape; -1 for an unknown one. */
static int setup(State *st, const char *threads, const char *preset, const char *kind) {
    memset(st, 0, sizeof *st);
    st->threads = atoi(threads);
    st->last_tid = -1;
    st->held_tid = -1;
    st->indexing = 1;
    st->ids = kh_init(names);
    if (!st->ids) return -1;
    if (strcmp(preset, "bed") == 0) st->conf = tbx_conf_bed, st->bed = 1;
    else if (strcmp(preset, "vcf") == 0) st->conf = tbx_conf_vcf;
    else if (strcmp(preset, "gff") == 0) st->conf = tbx_conf_gff;
    else return -1;
    if (strcmp(kind, "tbi") == 0) st->fmt = HTS_FMT_TBI, st->min_shift = 14, st->n_lvls = 5;
    else if (strcmp(kind, "csi") == 0) st->fmt = HTS_FMT_CSI, st->min_shift = 14, st->n_lvls = (TBX_MAX_SHIFT - 14 + 2) / 3;
    else return -1;
    return 0;
}

/* `bgzindex index`: tabix's own reading of a BGZF text (tbx.c tbx_index: bgzf_getline, the virtual
   offset after each line), with this file's parse; 0 with INDEX written, REFUSED where tabix would not
   index it (nothing written), 1 on an I/O error. */
static int index_text(State *st, const char *path, int skip, const char *index, Check *ck) {
    BGZF *in = bgzf_open(path, "r");
    if (!in) return fail("cannot open %s", path);
    if (bgzf_compression(in) != bgzf) return REFUSED;
    if (st->threads > 1 && bgzf_mt(in, st->threads, 256) < 0) return fail("%s", "cannot start threads");
    st->conf.line_skip = skip;
    kstring_t str = {0, 0, NULL};
    int64_t lineno = 0;
    uint64_t last_off = 0;
    int ret;
    Interval intv;
    int64_t read = in->uncompressed_address;
    while ((ret = bgzf_getline(in, '\n', &str)) >= 0) {
        ++lineno;
        if (ck) { /* bgzf_getline drops a CR before the newline: the bytes it went past say so (unsure) */
            int whole = in->uncompressed_address - read == (int64_t)str.l + 1;
            read = in->uncompressed_address;
            if (check_line(ck, str.s, str.l, whole) < 0) ck->sure = 0; /* no verdict: the caller checks */
        }
        if (str.s[0] == st->conf.meta_char && st->fmt == HTS_FMT_CSI && st->conf.preset == TBX_VCF)
            contig_length(str.s, &st->longest);
        if (lineno <= skip || str.s[0] == st->conf.meta_char) {
            last_off = (uint64_t)bgzf_tell(in);
            continue;
        }
        if (!st->idx) {
            if (st->fmt == HTS_FMT_CSI) { /* tabix's adjust_n_lvls, from the header's longest ##contig */
                int64_t size = 1LL << (st->min_shift + st->n_lvls * 3), longest = st->longest + 256;
                for (; longest > size; ++st->n_lvls, size <<= 3) {}
            }
            st->idx = hts_idx_init(0, st->fmt, last_off, st->min_shift, st->n_lvls);
            if (!st->idx) return fail("%s", "out of memory");
        }
        if (parse(&st->conf, (int)str.l, str.s, &intv) < 0) continue; /* tabix skips it too */
        int tid = accepted(st, &intv);
        if (tid == -2) return fail("%s", "out of memory");
        if (tid < 0 || hts_idx_push(st->idx, tid, intv.beg, intv.end, (uint64_t)bgzf_tell(in), 1) < 0)
            return REFUSED;
    }
    if (ret < -1) return REFUSED; /* damaged: tabix fails too, and says where */
    if (!st->idx && !(st->idx = hts_idx_init(0, st->fmt, last_off, st->min_shift, st->n_lvls)))
        return fail("%s", "out of memory");
    if (save_index(st, (uint64_t)bgzf_tell(in), index) < 0) {
        unlink(index);
        return fail("writing the index %s failed", index);
    }
    free(str.s);
    if (bgzf_close(in) < 0) return fail("closing %s", path);
    if (ck) ck->bytes = read;
    if (ck) (void)check_finish(ck); /* where it cannot write its verdict, the caller checks the text */
    return 0;
}

/* `bgzindex count`: the records that queries through the index return, read by htslib's own iterator
   (tbx_itr_queryi, tbx_itr_next: tbx_readrec, whose parse is tbx_parse1), one query per region. */
static int count_records(const char *path, const char *index, const char *regions) {
    htsFile *fp = hts_open(path, "r");
    if (!fp) return fail("cannot open %s", path);
    tbx_t *tbx = tbx_index_load2(path, index);
    if (!tbx) return fail("cannot load the index %s", index);
    FILE *list = fopen(regions, "r");
    if (!list) return fail("cannot open %s", regions);
    kstring_t str = {0, 0, NULL}, region = {0, 0, NULL};
    long long total = 0;
    int status = 0;
    while (status == 0 && kgetline(&region, (kgets_func *)fgets, list) >= 0) {
        char *begin = strchr(region.s, '\t'), *end = begin ? strchr(begin + 1, '\t') : NULL, *after;
        if (!end) {
            status = fail("not a BED region: %s", region.s);
            break;
        }
        *begin = 0;
        hts_pos_t beg = strtoll(begin + 1, &after, 10), stop = strtoll(end + 1, &after, 10);
        int tid = tbx_name2id(tbx, region.s);
        if (tid >= 0) {
            hts_itr_t *itr = tbx_itr_queryi(tbx, tid, beg, stop);
            if (!itr) {
                status = fail("the query of %s failed", region.s);
                break;
            }
            int ret;
            while ((ret = tbx_itr_next(fp, tbx, itr, &str)) >= 0) ++total;
            tbx_itr_destroy(itr);
            /* a damaged block can end the iteration as the end of the data would: the stream's error says */
            if (ret < -1 || hts_get_bgzfp(fp)->errcode) status = fail("reading the records of %s failed", region.s);
        }
        region.l = 0;
    }
    if (status == 0 && ferror(list)) status = fail("reading %s failed", regions);
    fclose(list);
    free(str.s);
    free(region.s);
    tbx_destroy(tbx);
    if (hts_close(fp) < 0 && status == 0) status = fail("closing %s", path);
    if (status == 0) printf("%lld\n", total);
    return status;
}

int main(int argc, char **argv) {
    State st;
    if (argc == 5 && strcmp(argv[1], "count") == 0) return count_records(argv[2], argv[3], argv[4]);
    if ((argc == 8 || argc == 14) && strcmp(argv[1], "index") == 0) {
        if (setup(&st, argv[3], argv[4], argv[5]) < 0) return fail("unknown preset or kind: %s", argv[4]);
        Check check;
        if (argc == 14) {
            if (check_init(&check, argv + 8) < 0) return fail("cannot check a text as %s", argv[9]);
            unlink(check.path); /* what an earlier run over the same file said is not of this text */
        }
        return index_text(&st, argv[2], atoi(argv[6]), argv[7], argc == 14 ? &check : NULL);
    }
    if ((argc != 8 && argc != 14) || strcmp(argv[1], "compress") != 0)
        return fail("%s", "usage: bgzindex compress LEVEL THREADS PRESET KIND INDEX REPORT < TEXT > OUT\n"
                          "       bgzindex compress LEVEL THREADS PRESET KIND INDEX REPORT CHECK FORMAT START END"
                          " MIN EXACT < TEXT > OUT\n"
                          "       bgzindex index FILE THREADS PRESET KIND SKIP INDEX [CHECK FORMAT START END MIN EXACT]\n"
                          "       bgzindex count FILE INDEX REGIONS");
    argv++;
    int level = atoi(argv[1]);
    if (setup(&st, argv[2], argv[3], argv[4]) < 0) return fail("unknown preset or kind: %s", argv[3]);
    if (level < -1 || level > 9) return fail("compression level %s is not -1 to 9", argv[1]);
    Check check;
    int checking = argc == 14;
    if (checking) {
        if (check_init(&check, argv + 7) < 0) return fail("cannot check a text as %s", argv[8]);
        unlink(check.path); /* what an earlier run over the same output said is not of this text */
    }
    char mode[3] = "w";
    if (level >= 0) mode[1] = (char)('0' + level);
    unlink(argv[6]); /* a report left by an earlier run over the same output says nothing of this one */
    st.out = bgzf_dopen(STDOUT_FILENO, mode);
    if (!st.out) return fail("%s", "cannot open stdout");
    st.in_header = 1;

    size_t size = CHUNK;
    char *buffer = malloc(size + 1); /* + 1: a last line without a newline is cut with a NUL */
    size_t held = 0;
    if (!buffer) return fail("%s", "out of memory");
    for (;;) {
        ssize_t got = read(STDIN_FILENO, buffer + held, size - held);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fail("reading stdin: %s", strerror(errno));
        held += (size_t)got;
        size_t at = 0;
        for (;;) {
            char *end = memchr(buffer + at, '\n', held - at);
            if (!end) break;
            size_t length = (size_t)(end - (buffer + at));
            if (checking && check_line(&check, buffer + at, length, 1) < 0)
                check.sure = 0; /* an error of the check's own: no verdict, the caller checks the text */
            if (line(&st, buffer + at, length, 1) < 0)
                return fail("%s", "writing the output failed");
            at = (size_t)(end - buffer) + 1;
        }
        if (got == 0) {
            if (held > at && checking && check_line(&check, buffer + at, held - at, 0) < 0)
                check.sure = 0;
            if (held > at && line(&st, buffer + at, held - at, 0) < 0)
                return fail("%s", "writing the output failed");
            break;
        }
        if (at == 0 && held == size) { /* a line longer than the buffer: twice the room */
            char *grown = realloc(buffer, size * 2 + 1);
            if (!grown) return fail("%s", "out of memory");
            buffer = grown;
            size *= 2;
            continue;
        }
        memmove(buffer, buffer + at, held - at);
        held -= at;
    }
    if (bgzf_flush(st.out) < 0) return fail("%s", "writing the output failed");
    if (push_held(&st, 1) < 0) return fail("%s", "indexing the last record failed");
    if (st.indexing && finish_index(&st, argv[5], argv[6]) < 0) {
        unlink(argv[5]);
        unlink(argv[6]);
        return fail("writing the index %s failed", argv[5]);
    }
    if (bgzf_close(st.out) < 0) return fail("%s", "writing the output failed");
    if (checking) (void)check_finish(&check);
    return 0;
}
