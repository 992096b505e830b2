/* bamwalk: walk the records of an UNCOMPRESSED BAM stream on stdin (what `bgzip -dc` writes).

   Built and run by pipelines/native.py (C99, no htslib: it reads only the fixed fields of each record).

     bamwalk order             Are the records in samtools sort order? Prints "go" once the first
                               records have passed in order (not when there are
                               none), then the record count; exit 1 at the first
                               record out of order.
     bamwalk count FILE        Copies stdin to stdout unchanged; at the end writes the record count
                               to FILE.
     bamwalk route CUTS OUT..  Writes each record to the OUT its reference id falls in (CUTS: the
                               comma-separated ids where outputs 2.. start; unplaced, -1, go to the
                               last), each OUT an uncompressed BAM: the input's header bytes, then its
                               records in input order. Prints the count of each OUT.
     bamwalk range NREF LIMIT CUTS OUT..
                               route over one range of a BGZF file decompressed from one of its
                               blocks: NREF -1, the stream starts with the header (as route); else
                               it starts inside the records of a BAM of NREF references, the OUTs
                               get records only, and the first record start is found by checks over
                               several records (a guess the caller confirms). Stops at the first
                               record starting at or after uncompressed byte LIMIT. Prints "START
                               END" (where the first record routed starts, where the last ends) or
                               "none" (no record start found before LIMIT), then the counts.

   samtools sort's order (1.16, bam_sort.c bam1_cmp_core): reference id compared unsigned (unplaced,
   -1, last), then ((pos + 1) & 0xffffffff) << 1 | reverse-strand bit; ties keep the input order.

   Exit status: 0 done; 1 out of order (order); 2 malformed (not BAM, a record shorter than 36 or
   longer than 2^28 bytes, or, for route, a reference id the header lacks); 3 truncated; 4 usage or
   I/O error. Messages for 2-4 go to stderr. */

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { COPY_NONE, COPY_WRITE, COPY_TEE };
enum { DONE = 0, UNSORTED = 1, MALFORMED = 2, TRUNCATED = 3, FAILED = 4 };

#define CHUNK (1 << 20)
#define SMALLEST_RECORD 36        /* block_size (4) + the 32 bytes of fixed fields */
#define LARGEST_RECORD (1 << 28)  /* an ultra-long read with its qualities and tags is a few MB */

static const char *mode_name = "bamwalk";

#if defined(__GNUC__)
static int fail(int code, const char *format, ...) __attribute__((format(printf, 2, 3)));
#endif

/* Say why on stderr; returns `code`, the exit status. */
static int fail(int code, const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "bamwalk %s: ", mode_name);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    return code;
}

/* The unread input: bytes [at, end) of data. */
typedef struct {
    unsigned char *data;
    size_t at, end, size;
    int eof;
    int copy; /* count: every byte read goes to stdout as it is (COPY_WRITE, or COPY_TEE between pipes) */
    uint64_t consumed; /* input offset of data[0] */
} Input;

static int write_all(int fd, const unsigned char *bytes, size_t size) {
    while (size) {
        ssize_t done = write(fd, bytes, size);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        bytes += done;
        size -= (size_t)done;
    }
    return 0;
}

/* Read up to `want` more bytes (at least one unless at the end); -1 on an I/O error. */
static int fill(Input *in, size_t want) {
    if (in->eof)
        return 0;
    if (in->at > 0 && in->end + want > in->size) { /* keep only what is unread */
        memmove(in->data, in->data + in->at, in->end - in->at);
        in->consumed += in->at;
        in->end -= in->at;
        in->at = 0;
    }
    if (in->end + want > in->size) {
        size_t size = in->size ? in->size : CHUNK;
        while (in->end + want > size)
            size *= 2;
        unsigned char *grown = realloc(in->data, size);
        if (!grown)
            return -1;
        in->data = grown;
        in->size = size;
    }
    for (;;) {
#ifdef __linux__
        if (in->copy == COPY_TEE) { /* the pipe's pages to stdout without a copy, then read as before */
            ssize_t teed = tee(STDIN_FILENO, STDOUT_FILENO, want, 0);
            if (teed < 0 && errno == EINTR)
                continue;
            if (teed < 0 && errno != EINVAL)
                return -1;
            if (teed < 0) { /* not two pipes */
                in->copy = COPY_WRITE;
                continue;
            }
            if (teed == 0) {
                in->eof = 1;
                return 0;
            }
            for (size_t done = 0; done < (size_t)teed;) {
                ssize_t got = read(STDIN_FILENO, in->data + in->end + done, (size_t)teed - done);
                if (got <= 0 && !(got < 0 && errno == EINTR))
                    return -1;
                done += got > 0 ? (size_t)got : 0;
            }
            in->end += (size_t)teed;
            return 1;
        }
#endif
        ssize_t got = read(STDIN_FILENO, in->data + in->end, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0) {
            in->eof = 1;
            return 0;
        }
        if (in->copy == COPY_WRITE && write_all(STDOUT_FILENO, in->data + in->end, (size_t)got) != 0)
            return -1;
        in->end += (size_t)got;
        return 1;
    }
}

/* Make `need` unread bytes available: 1, 0 at the end of the input, -1 on an I/O error. */
static int have(Input *in, size_t need) {
    while (in->end - in->at < need) {
        size_t missing = need - (in->end - in->at);
        int got = fill(in, missing > CHUNK ? missing : CHUNK);
        if (got <= 0)
            return got;
    }
    return 1;
}

static uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The header (magic, text, references): its length in bytes and the number of references. */
static int read_header(Input *in, size_t *length, uint32_t *references) {
    int got = have(in, 12);
    if (got < 0)
        return fail(FAILED, "cannot read the input: %s", strerror(errno));
    if (got == 0 && in->end - in->at < 4)
        return in->end == in->at ? fail(TRUNCATED, "no input") : fail(TRUNCATED, "the input ends in the BAM magic");
    if (memcmp(in->data + in->at, "BAM\1", 4) != 0)
        return fail(MALFORMED, "not an uncompressed BAM (no BAM magic)");
    if (got == 0)
        return fail(TRUNCATED, "the input ends in the header");
    size_t at = 12 + (size_t)u32(in->data + in->at + 4);
    if (u32(in->data + in->at + 4) > INT32_MAX)
        return fail(MALFORMED, "a header text length over 2^31");
    if ((got = have(in, at)) <= 0)
        return got < 0 ? fail(FAILED, "cannot read the input: %s", strerror(errno))
                       : fail(TRUNCATED, "the input ends in the header text");
    uint32_t count = u32(in->data + in->at + at - 4);
    if (count > INT32_MAX)
        return fail(MALFORMED, "a reference count over 2^31");
    for (uint32_t ref = 0; ref < count; ref++) {
        if ((got = have(in, at + 4)) > 0) {
            uint32_t name = u32(in->data + in->at + at);
            if (name > INT32_MAX)
                return fail(MALFORMED, "reference %" PRIu32 ": a name length over 2^31", ref);
            got = have(in, at + 8 + name);
            at += 8 + name;
        }
        if (got <= 0)
            return got < 0 ? fail(FAILED, "cannot read the input: %s", strerror(errno))
                           : fail(TRUNCATED, "the input ends in the header's references");
    }
    *length = at;
    *references = count;
    return DONE;
}

/* The next record's length with its block_size field: 0 at a clean end, or an exit status (as a
   negative number) for a malformed, truncated or unreadable one. */
static long next_record(Input *in, uint64_t number) {
    int got = have(in, 4);
    if (got < 0)
        return -fail(FAILED, "cannot read the input: %s", strerror(errno));
    if (got == 0)
        return in->end == in->at ? 0 : -fail(TRUNCATED, "the input ends in record %" PRIu64 "'s length", number + 1);
    int32_t block = (int32_t)u32(in->data + in->at);
    long size = 4 + (long)block;
    if (block < 0 || size < SMALLEST_RECORD || size > LARGEST_RECORD)
        return -fail(MALFORMED, "record %" PRIu64 " (at uncompressed byte %" PRIu64 ") is %ld bytes long, "
                     "outside 36 to 2^28", number + 1, in->consumed + in->at, size);
    if ((got = have(in, (size_t)size)) <= 0)
        return got < 0 ? -fail(FAILED, "cannot read the input: %s", strerror(errno))
                       : -fail(TRUNCATED, "the input ends in record %" PRIu64, number + 1);
    return size;
}

static uint64_t position_key(const unsigned char *record) {
    uint64_t position = ((uint64_t)u32(record + 8) + 1) & 0xffffffffu;
    return position << 1 | ((u16(record + 18) >> 4) & 1);
}

static int order(Input *in) {
    size_t header;
    uint32_t references;
    int status = read_header(in, &header, &references);
    if (status != DONE)
        return status;
    in->at += header;
    uint64_t count = 0, last_ref = 0, last_pos = 0;
    int told = 0;
    for (;;) {
        if (!told && in->end - in->at < 4 && count) { /* the first records have passed in order */
            puts("go");
            fflush(stdout);
            told = 1;
        }
        long size = next_record(in, count);
        if (size < 0)
            return (int)-size;
        if (size == 0)
            break;
        const unsigned char *record = in->data + in->at;
        uint64_t ref = u32(record + 4), pos = position_key(record);
        if (count && (ref < last_ref || (ref == last_ref && pos < last_pos)))
            return UNSORTED;
        last_ref = ref;
        last_pos = pos;
        in->at += (size_t)size;
        count++;
    }
    if (!told && count)
        puts("go");
    printf("%" PRIu64 "\n", count);
    return fflush(stdout) == 0 ? DONE : fail(FAILED, "cannot write the count");
}

static int count(Input *in, const char *to) {
    size_t header;
    uint32_t references;
    in->copy = COPY_TEE;
    int status = read_header(in, &header, &references);
    if (status != DONE)
        return status;
    in->at += header;
    uint64_t records = 0;
    for (;;) {
        long size = next_record(in, records);
        if (size < 0)
            return (int)-size;
        if (size == 0)
            break;
        in->at += (size_t)size;
        records++;
    }
    FILE *out = fopen(to, "w");
    if (!out || fprintf(out, "%" PRIu64 "\n", records) < 0 || fclose(out) != 0)
        return fail(FAILED, "cannot write the count to %s: %s", to, strerror(errno));
    return DONE;
}

#define CHECKED 4 /* records a guessed record start must pass */

/* Does a plausible record of a BAM with `references` references start at data[0] (of `size` bytes
   available)? Its length (with block_size), or 0. */
static long plausible(const unsigned char *data, size_t size, int64_t references) {
    if (size < SMALLEST_RECORD)
        return 0;
    int32_t block = (int32_t)u32(data), ref = (int32_t)u32(data + 4), mate = (int32_t)u32(data + 24);
    int32_t pos = (int32_t)u32(data + 8), mate_pos = (int32_t)u32(data + 28), l_seq = (int32_t)u32(data + 20);
    long length = 4 + (long)block, name = data[12];
    if (block < 0 || length < SMALLEST_RECORD || length > LARGEST_RECORD || ref < -1 || ref >= references ||
        mate < -1 || mate >= references || pos < -1 || mate_pos < -1 || l_seq < 0 || name < 1)
        return 0;
    if (32 + name + 4 * (long)u16(data + 16) + ((long)l_seq + 1) / 2 + (long)l_seq > (long)block)
        return 0;
    if (size < (size_t)(36 + name) || data[36 + name - 1] != 0 || memchr(data + 36, 0, (size_t)name - 1))
        return 0;
    return length;
}

/* The first offset before `limit` where CHECKED plausible records follow each other (or fewer that
   end exactly at the input's end); -1 when there is none, -2 on a read error. */
static long long find_start(Input *in, int64_t references, long long limit) {
    for (long long at = 0; at < limit; at++) {
        int got = have(in, (size_t)at + SMALLEST_RECORD);
        if (got < 0)
            return -2;
        if (got == 0)
            return -1;
        size_t next = (size_t)at;
        int k = 0;
        for (; k < CHECKED; k++) {
            if ((got = have(in, next + 4)) <= 0) {
                if (got < 0)
                    return -2;
                break;
            }
            long length = (long)u32(in->data + in->at + next) + 4;
            if (length < SMALLEST_RECORD || length > LARGEST_RECORD)
                break;
            if ((got = have(in, next + (size_t)length)) <= 0) {
                if (got < 0)
                    return -2;
                break;
            }
            if (!plausible(in->data + in->at + next, (size_t)length, references))
                break;
            next += (size_t)length;
        }
        if (k == CHECKED || (k > 0 && in->eof && in->end - in->at == next))
            return at;
    }
    return -1;
}

static int route(Input *in, const char *cuts_text, int outputs, char **names, int64_t given, long long limit) {
    long *cuts = calloc((size_t)outputs, sizeof *cuts);
    FILE **files = calloc((size_t)outputs, sizeof *files);
    uint64_t *counts = calloc((size_t)outputs, sizeof *counts);
    if (!cuts || !files || !counts)
        return fail(FAILED, "out of memory");
    int parsed = 0;
    const char *text = cuts_text;
    while (*text && parsed < outputs) {
        char *end;
        errno = 0;
        cuts[parsed++] = strtol(text, &end, 10);
        if (end == text || errno || (*end && *end != ','))
            return fail(FAILED, "usage: CUTS are reference ids separated by commas, not %s", cuts_text);
        text = *end ? end + 1 : end;
    }
    if (parsed != outputs - 1 || *text)
        return fail(FAILED, "usage: %d outputs need %d cuts, not %s", outputs, outputs - 1, cuts_text);
    for (int part = 1; part < outputs - 1; part++)
        if (cuts[part] < cuts[part - 1])
            return fail(FAILED, "usage: the cuts %s are not in increasing order", cuts_text);

    size_t header = 0;
    uint32_t references = (uint32_t)given;
    long long start = 0;
    if (given < 0) {
        int status = read_header(in, &header, &references);
        if (status != DONE)
            return status;
        start = (long long)header;
    } else if ((start = find_start(in, given, limit)) == -2) {
        return fail(FAILED, "cannot read the input: %s", strerror(errno));
    }
    /* the output of each reference id, and of -1 (the last) at index references */
    unsigned short *part_of = malloc(((size_t)references + 1) * sizeof *part_of);
    if (!part_of)
        return fail(FAILED, "out of memory");
    for (uint32_t ref = 0, part = 0; ref <= references; ref++) {
        while (part < (uint32_t)outputs - 1 && (long)ref >= cuts[part])
            part++;
        part_of[ref] = (unsigned short)(ref == references ? outputs - 1 : (int)part);
    }
    for (int part = 0; part < outputs; part++) {
        files[part] = fopen(names[part], "wb");
        if (!files[part])
            return fail(FAILED, "cannot write %s: %s", names[part], strerror(errno));
        setvbuf(files[part], NULL, _IOFBF, CHUNK);
        if (header && fwrite(in->data + in->at, 1, header, files[part]) != header)
            return fail(FAILED, "cannot write %s: %s", names[part], strerror(errno));
    }
    if (start == -1) { /* no record start found: nothing routed */
        for (int part = 0; part < outputs; part++)
            if (fclose(files[part]) != 0)
                return fail(FAILED, "cannot write %s: %s", names[part], strerror(errno));
        puts("none");
        return fflush(stdout) == 0 ? DONE : fail(FAILED, "cannot write the counts");
    }
    in->at += (size_t)start;
    uint64_t records = 0;
    for (;;) {
        if (limit >= 0 && (long long)(in->consumed + in->at) >= limit)
            break;
        long size = next_record(in, records);
        if (size < 0)
            return (int)-size;
        if (size == 0)
            break;
        const unsigned char *record = in->data + in->at;
        int32_t ref = (int32_t)u32(record + 4), mate = (int32_t)u32(record + 24);
        if (ref < -1 || ref >= (int64_t)references || mate < -1 || mate >= (int64_t)references)
            return fail(MALFORMED, "record %" PRIu64 " names reference id %" PRId32 ", which the header's %" PRIu32
                        " references do not include", records + 1, ref < -1 || ref >= (int64_t)references ? ref : mate,
                        references);
        unsigned short part = part_of[ref < 0 ? references : (uint32_t)ref];
        if (fwrite(record, 1, (size_t)size, files[part]) != (size_t)size)
            return fail(FAILED, "cannot write %s: %s", names[part], strerror(errno));
        counts[part]++;
        in->at += (size_t)size;
        records++;
    }
    if (limit >= 0)
        printf("%lld %lld\n", start, (long long)(in->consumed + in->at));
    for (int part = 0; part < outputs; part++) {
        if (fclose(files[part]) != 0)
            return fail(FAILED, "cannot write %s: %s", names[part], strerror(errno));
        printf(part ? " %" PRIu64 : "%" PRIu64, counts[part]);
    }
    putchar('\n');
    return fflush(stdout) == 0 ? DONE : fail(FAILED, "cannot write the counts");
}

int main(int argc, char **argv) {
    Input in = {0};
#ifdef F_SETPIPE_SZ
    fcntl(STDIN_FILENO, F_SETPIPE_SZ, CHUNK); /* fewer, larger reads from bgzip; refused: no matter */
#endif
    if (argc >= 2)
        mode_name = argv[1];
    if (argc == 2 && strcmp(argv[1], "order") == 0) {
        return order(&in);
    }
    if (argc == 3 && strcmp(argv[1], "count") == 0) {
#ifdef F_SETPIPE_SZ
        fcntl(STDOUT_FILENO, F_SETPIPE_SZ, CHUNK);
#endif
        return count(&in, argv[2]);
    }
    if (argc >= 4 && strcmp(argv[1], "route") == 0 && argc - 3 <= 65535)
        return route(&in, argv[2], argc - 3, argv + 3, -1, -1);
    if (argc >= 6 && strcmp(argv[1], "range") == 0 && argc - 5 <= 65535) {
        char *end1, *end2;
        long long given = strtoll(argv[2], &end1, 10), limit = strtoll(argv[3], &end2, 10);
        if (*end1 || *end2 || given < -1 || given > INT32_MAX || limit < 0)
            return fail(FAILED, "usage: range NREF LIMIT CUTS OUT...");
        return route(&in, argv[4], argc - 5, argv + 5, given, limit);
    }
    mode_name = "usage";
    return fail(FAILED, "bamwalk order | count FILE | route CUTS OUT... | range NREF LIMIT CUTS OUT...");
}
