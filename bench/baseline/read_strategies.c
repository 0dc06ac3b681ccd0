/* How the -r -w fast path should read (issue 20): the CPU time (user + system) of walking every
 * record header of a classic pcap file, touching each record, and (with an output file)
 * writing every record out, by
 *   read      pread() into one reused 1 MB buffer (pfilter/capture/_fastcopy.pyx with PFILTER_NO_MMAP=1)
 *   read4     the same with 4 MB chunks
 *   mmap      one map of the file, MADV_SEQUENTIAL
 *   mmapw     the same, MADV_SEQUENTIAL | MADV_WILLNEED
 *   mmappop   64 MB windows mapped with MAP_POPULATE
 *   mmapchunk 1 MB chunks mapped one at a time (MADV_POPULATE_READ), the walk prefetching every
 *             line 16 KB ahead (what pfilter/capture/_fastcopy.pyx does)
 *   cfr       pread() for the walk, copy_file_range() for the writes (the kernel copies the runs)
 *   mmapalloc mmapchunk, with the output's blocks allocated first on ext4 (fallocate of the input's
 *             size, truncated to what was written at the end: what pfilter's fast path does)
 * Usage: read_strategies FILE MODE [OUTPUT]; prints "MODE records CPU-seconds wall-seconds". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define TAIL (262144 + 16)

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Walk the whole records in b[0:n), reading a byte of each, prefetching every cache line
 * `ahead` bytes before the record it reads (0: none); the bytes they take. */
static size_t walk(const uint8_t *b, size_t n, size_t ahead, uint64_t *acc, uint64_t *count) {
    size_t p = 0, fetched = 0;
    while (n - p >= 16) {
        uint32_t c;
        for (; ahead && fetched < p + ahead && fetched < n; fetched += 64)
            __builtin_prefetch(b + fetched);
        memcpy(&c, b + p + 8, 4);
        if (n - p - 16 < c)
            break;
        *acc += b[p + 16 + (c > 20 ? 20 : 0)];
        (*count)++;
        p += 16 + c;
    }
    return p;
}

static void out(int ofd, const void *p, size_t n) {
    struct iovec v = {(void *)p, n};
    if (ofd >= 0 && n && writev(ofd, &v, 1) < 0)
        perror("writev");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE MODE [OUTPUT]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[2];
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    size_t size = st.st_size, chunk = strcmp(mode, "read4") ? 1 << 20 : 4 << 20;
    int ofd = argc > 3 ? open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
    uint64_t acc = 0, count = 0;
    double c0 = cpu(), w0 = now();
    int alloc = !strcmp(mode, "mmapalloc");
    if (alloc) {
        struct statfs fs;
        if (ofd < 0 || fstatfs(ofd, &fs) != 0 || fs.f_type != 0xEF53 || fallocate(ofd, 0, 0, (off_t)size) != 0)
            alloc = 0;
        mode = "mmapchunk";
    }
    if (!strcmp(mode, "read") || !strcmp(mode, "read4") || !strcmp(mode, "cfr")) {
        uint8_t *buf = malloc(chunk + TAIL);
        size_t carry = 0;
        off_t off = 24;
        loff_t in = 24;
        for (;;) {
            ssize_t got = pread(fd, buf + carry, chunk, off);
            if (got <= 0)
                break;
            size_t n = carry + got, used = walk(buf, n, 0, &acc, &count);
            if (!strcmp(mode, "cfr")) {
                for (size_t left = used; ofd >= 0 && left;) {
                    ssize_t k = copy_file_range(fd, &in, ofd, NULL, left, 0);
                    if (k <= 0)
                        break;
                    left -= k;
                }
            } else {
                out(ofd, buf, used);
            }
            memmove(buf, buf + used, n - used);
            carry = n - used;
            off += got;
        }
        free(buf);
    } else if (!strcmp(mode, "mmap") || !strcmp(mode, "mmapw")) {
        uint8_t *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        madvise(m, size, MADV_SEQUENTIAL);
        if (!strcmp(mode, "mmapw"))
            madvise(m, size, MADV_WILLNEED);
        for (size_t p = 24; p < size;) {
            size_t left = size - p, used = walk(m + p, left < chunk + TAIL ? left : chunk + TAIL, 0, &acc, &count);
            if (!used)
                break;
            out(ofd, m + p, used);
            p += used;
        }
        munmap(m, size);
    } else if (!strcmp(mode, "mmappop") || !strcmp(mode, "mmapchunk")) {
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
        /* mmappop: 64 MB windows, MAP_POPULATE; mmapchunk: a chunk and its tail room at a time,
         * MADV_POPULATE_READ on the chunk, the walk prefetching 16 KB ahead */
        int pop = !strcmp(mode, "mmappop");
        size_t window = pop ? 64 << 20 : chunk + TAIL;
        for (size_t p = 24; p < size;) {
            size_t base = p & ~(size_t)4095, len = size - base < window ? size - base : window;
            uint8_t *m = mmap(NULL, len, PROT_READ, pop ? MAP_SHARED | MAP_POPULATE : MAP_PRIVATE, fd, base);
            if (!pop)
                madvise(m, len < chunk ? len : chunk, MADV_POPULATE_READ);
            size_t used = walk(m + (p - base), len - (p - base), pop ? 0 : 16384, &acc, &count);
            out(ofd, m + (p - base), used);
            munmap(m, len);
            if (!used)
                break;
            p += used;
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (alloc && ftruncate(ofd, lseek(ofd, 0, SEEK_CUR)) != 0)
        perror("ftruncate");
    printf("%s %llu %.4f %.4f %llu\n", argv[2], (unsigned long long)count, cpu() - c0, now() - w0,
           (unsigned long long)acc);
    return 0;
}
