/* bamindex: in one decompression of a BAM, check that its records are in samtools sort order, count them,
   and write the index `samtools index` would write for it.

   Built and run by pipelines/native.py (C99, linked with htslib: -lhts).

     bamindex BAM THREADS KIND INDEX

   KIND bai (`samtools index -b`) or csi (`samtools index -c -m 14`). Prints "go" once the first records
   have passed in order (not when there are none), then the record count; INDEX is then the bytes
   `samtools index` writes: the same htslib calls on the same records (sam.c sam_index, htslib 1.16).

   samtools sort's order (1.16, bam_sort.c bam1_cmp_core): reference id compared unsigned (unplaced, -1,
   last), then ((pos + 1) & 0xffffffff) << 1 | reverse-strand bit; ties keep the input order.

   Exit status: 0 done; 1 a record out of order; 2 a record htslib cannot index or read (malformed); 3
   truncated or damaged; 4 usage or I/O error. No INDEX is left but on 0. */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <htslib/bgzf.h>
#include <htslib/hts.h>
#include <htslib/sam.h>

enum { DONE = 0, UNSORTED = 1, MALFORMED = 2, TRUNCATED = 3, FAILED = 4 };
#define GO_AFTER 1000 /* records in order before "go": the caller starts its copy of the file then */

static int stop(int code, const char *why, const char *index) {
    if (why) fprintf(stderr, "bamindex: %s\n", why);
    if (index) unlink(index);
    return code;
}

int main(int argc, char **argv) {
    if (argc != 5) return stop(FAILED, "usage: bamindex BAM THREADS KIND INDEX", NULL);
    const char *path = argv[1], *index = argv[4];
    int threads = atoi(argv[2]), min_shift, n_lvls, fmt;
    if (strcmp(argv[3], "bai") == 0) min_shift = 14, n_lvls = 5, fmt = HTS_FMT_BAI;
    else if (strcmp(argv[3], "csi") == 0) min_shift = 14, n_lvls = 0, fmt = HTS_FMT_CSI;
    else return stop(FAILED, "KIND is bai or csi", NULL);

    htsFile *fp = hts_open(path, "r");
    if (!fp) return stop(FAILED, "cannot open the BAM", NULL);
    if (threads > 0) hts_set_threads(fp, threads);
    if (fp->format.format != bam || fp->format.compression != bgzf) return stop(MALFORMED, "not a BGZF BAM", NULL);
    sam_hdr_t *h = sam_hdr_read(fp);
    if (!h) return stop(MALFORMED, "cannot read the header", NULL);
    if (fmt == HTS_FMT_CSI) { /* sam_index's depth: enough levels for the longest reference */
        hts_pos_t max_len = 0, s;
        for (int i = 0; i < h->n_targets; ++i) {
            hts_pos_t len = sam_hdr_tid2len(h, i);
            if (max_len < len) max_len = len;
        }
        max_len += 256;
        for (n_lvls = 0, s = 1 << min_shift; max_len > s; ++n_lvls, s <<= 3) {}
    }
    hts_idx_t *idx = hts_idx_init(h->n_targets, fmt, bgzf_tell(fp->fp.bgzf), min_shift, n_lvls);
    bam1_t *b = bam_init1();
    if (!idx || !b) return stop(FAILED, "out of memory", NULL);
    uint64_t count = 0, last_ref = 0, last_pos = 0;
    int ret;
    while ((ret = sam_read1(fp, h, b)) >= 0) {
        uint64_t ref = (uint32_t)b->core.tid;
        uint64_t pos = (uint64_t)((uint32_t)(b->core.pos + 1)) << 1 | ((b->core.flag & BAM_FREVERSE) != 0);
        if (count && (ref < last_ref || (ref == last_ref && pos < last_pos))) return stop(UNSORTED, NULL, NULL);
        last_ref = ref;
        last_pos = pos;
        if (hts_idx_push(idx, b->core.tid, b->core.pos, bam_endpos(b), bgzf_tell(fp->fp.bgzf),
                         !(b->core.flag & BAM_FUNMAP)) < 0)
            return stop(MALFORMED, "a record htslib cannot index", NULL);
        if (++count == GO_AFTER) {
            fputs("go\n", stdout);
            fflush(stdout);
        }
    }
    if (ret < -1) return stop(TRUNCATED, "a damaged or truncated record stream", NULL);
    if (count && count < GO_AFTER) fputs("go\n", stdout);
    if (hts_idx_finish(idx, bgzf_tell(fp->fp.bgzf)) < 0) return stop(FAILED, "finishing the index", NULL);
    if (hts_idx_save_as(idx, path, index, fmt) < 0) return stop(FAILED, "cannot write the index", index);
    if (hts_close(fp) < 0) return stop(TRUNCATED, "closing the BAM", index);
    printf("%" PRIu64 "\n", count);
    return fflush(stdout) == 0 ? DONE : stop(FAILED, "cannot write to stdout", index);
}
