/*
 * bpf_loop: the C baseline pfilter's VM is measured against. It runs libpcap's own interpreter,
 * bpf_filter(), over every packet of a capture held in memory, and times the loop.
 *
 * Program:   bpf_loop [-n REPS] [-v VERDICTS.u32] CAPTURE.pcap [PROGRAM.txt]
 *            PROGRAM.txt is `tcpdump -ddd` text ("N" then N lines "code jt jf k"); stdin if omitted.
 *            The capture (classic pcap, either byte order, micro- or nanosecond) is read once and
 *            its packets copied back to back into one buffer, as in a pfilter PacketBatch; then the
 *            loop runs REPS times (default 5). Prints one JSON line: packets, matched, reps,
 *            best_ns_per_packet, mean_ns_per_packet. -v writes the verdicts (uint32, native order).
 * Library:   built with -shared, bpf_loop_run() runs the same loop over arrays the caller owns
 *            (the benchmark passes a PacketBatch's numpy arrays through ctypes: one call per batch,
 *            never one per packet).
 *
 * Build:     cc -O2 -o bpf_loop bpf_loop.c -lpcap      (libpcap-dev)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pcap/pcap.h>

/* One pass of bpf_filter() over n packets; verdicts may be NULL. Returns how many matched. */
int64_t bpf_loop_run(const struct bpf_insn *insns, const uint8_t *data, const int64_t *offsets,
                     const uint32_t *caplen, const uint32_t *wirelen, int64_t n, uint32_t *verdicts)
{
    int64_t matched = 0;
    for (int64_t i = 0; i < n; i++) {
        u_int v = bpf_filter(insns, data + offsets[i], wirelen[i], caplen[i]);
        if (verdicts)
            verdicts[i] = v;
        matched += v != 0;
    }
    return matched;
}

struct capture {
    uint8_t *data;
    int64_t *offsets;
    uint32_t *caplen;
    uint32_t *wirelen;
    int64_t count;
};

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bpf_loop: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

static uint32_t get32(const uint8_t *p, int swapped)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

/* Read a classic pcap file into memory: packets back to back, plus per-packet arrays. */
static void read_capture(const char *path, struct capture *cap)
{
    FILE *fh = fopen(path, "rb");
    if (!fh)
        die(path, strerror(errno));
    if (fseek(fh, 0, SEEK_END) != 0)
        die(path, strerror(errno));
    long size = ftell(fh);
    rewind(fh);
    if (size < 24)
        die(path, "too short for a pcap file header");
    uint8_t *raw = malloc((size_t)size);
    if (!raw || fread(raw, 1, (size_t)size, fh) != (size_t)size)
        die(path, "cannot read");
    fclose(fh);

    uint32_t magic;
    memcpy(&magic, raw, 4);
    int swapped;
    if (magic == 0xa1b2c3d4u || magic == 0xa1b23c4du)
        swapped = 0;
    else if (magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u)
        swapped = 1;
    else
        die(path, "not a classic pcap file (pcapng is not read here)");

    int64_t capacity = 1024;
    cap->count = 0;
    cap->data = malloc((size_t)size);
    cap->offsets = malloc(capacity * sizeof *cap->offsets);
    cap->caplen = malloc(capacity * sizeof *cap->caplen);
    cap->wirelen = malloc(capacity * sizeof *cap->wirelen);
    if (!cap->data || !cap->offsets || !cap->caplen || !cap->wirelen)
        die("out of memory", NULL);
    int64_t pos = 24, used = 0;
    while (pos + 16 <= size) {
        uint32_t incl = get32(raw + pos + 8, swapped);
        uint32_t orig = get32(raw + pos + 12, swapped);
        if ((int64_t)incl > size - pos - 16)
            break;                                  /* truncated last record: stop, as tcpdump does */
        if (cap->count == capacity) {
            capacity *= 2;
            cap->offsets = realloc(cap->offsets, capacity * sizeof *cap->offsets);
            cap->caplen = realloc(cap->caplen, capacity * sizeof *cap->caplen);
            cap->wirelen = realloc(cap->wirelen, capacity * sizeof *cap->wirelen);
            if (!cap->offsets || !cap->caplen || !cap->wirelen)
                die("out of memory", NULL);
        }
        memcpy(cap->data + used, raw + pos + 16, incl);
        cap->offsets[cap->count] = used;
        cap->caplen[cap->count] = incl;
        cap->wirelen[cap->count] = orig;
        cap->count++;
        used += incl;
        pos += 16 + (int64_t)incl;
    }
    free(raw);
}

/* Parse `tcpdump -ddd` text: the instruction count, then one "code jt jf k" line each. */
static struct bpf_insn *read_program(FILE *fh, unsigned *len)
{
    if (fscanf(fh, "%u", len) != 1 || *len == 0 || *len > 4096)
        die("program", "expected an instruction count (tcpdump -ddd text)");
    struct bpf_insn *insns = calloc(*len, sizeof *insns);
    if (!insns)
        die("out of memory", NULL);
    for (unsigned i = 0; i < *len; i++) {
        unsigned code, jt, jf;
        unsigned long k;
        if (fscanf(fh, "%u %u %u %lu", &code, &jt, &jf, &k) != 4)
            die("program", "short or malformed instruction line");
        insns[i].code = (u_short)code;
        insns[i].jt = (u_char)jt;
        insns[i].jf = (u_char)jf;
        insns[i].k = (bpf_u_int32)k;
    }
    return insns;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int reps = 5, opt;
    const char *verdict_path = NULL;
    while ((opt = getopt(argc, argv, "n:v:")) != -1) {
        if (opt == 'n')
            reps = atoi(optarg);
        else if (opt == 'v')
            verdict_path = optarg;
        else
            die("usage", "bpf_loop [-n REPS] [-v VERDICTS.u32] CAPTURE.pcap [PROGRAM.txt]");
    }
    if (optind >= argc || reps < 1)
        die("usage", "bpf_loop [-n REPS] [-v VERDICTS.u32] CAPTURE.pcap [PROGRAM.txt]");

    struct capture cap;
    read_capture(argv[optind], &cap);
    FILE *prog_fh = stdin;
    if (optind + 1 < argc && !(prog_fh = fopen(argv[optind + 1], "r")))
        die(argv[optind + 1], strerror(errno));
    unsigned len;
    struct bpf_insn *insns = read_program(prog_fh, &len);

    uint32_t *verdicts = malloc((size_t)(cap.count ? cap.count : 1) * sizeof *verdicts);
    if (!verdicts)
        die("out of memory", NULL);
    double best = 0, total = 0;
    int64_t matched = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        matched = bpf_loop_run(insns, cap.data, cap.offsets, cap.caplen, cap.wirelen, cap.count, verdicts);
        double elapsed = now_ns() - t0;
        total += elapsed;
        if (r == 0 || elapsed < best)
            best = elapsed;
    }
    if (verdict_path) {
        FILE *out = fopen(verdict_path, "wb");
        if (!out || fwrite(verdicts, sizeof *verdicts, (size_t)cap.count, out) != (size_t)cap.count)
            die(verdict_path, "cannot write verdicts");
        fclose(out);
    }
    double n = cap.count ? (double)cap.count : 1.0;
    printf("{\"packets\": %" PRId64 ", \"matched\": %" PRId64 ", \"instructions\": %u, \"reps\": %d, "
           "\"best_ns_per_packet\": %.3f, \"mean_ns_per_packet\": %.3f}\n",
           cap.count, matched, len, reps, best / n, total / reps / n);
    return 0;
}
