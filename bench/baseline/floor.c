/* The floor of a `pfilter -r IN -w OUT --workers N` pass (bench/test_bench_scale.py): what any
 * pass must do that maps its input as pfilter/capture/_fastcopy.pyx does, without walking or
 * filtering the records and without an interpreter. The file is mapped once; N workers (forked
 * processes, as `pfilter -j N` runs them; threads with a fifth argument "threads") take every
 * N-th 1 MB chunk, populate its pages (MADV_POPULATE_READ; MADV_WILLNEED where the
 * kernel lacks it), pwrite() the chunk's share of WANT output bytes at the matching offset from
 * the map, and drop the pages (MADV_DONTNEED). The output's blocks are allocated first on ext4
 * (one fallocate of the input's size, cut to WANT at the end), as pfilter's fast path does
 * (pfilter/capture/_fastcopy.pyx, preallocate). With "touch", each worker also reads one byte of
 * every TOUCH_STRIDE of its chunks before writing: about the cache lines a walk of the record
 * headers reads (records of the generated captures are about 500 bytes), the memory traffic any
 * pass over the packets makes. With "separate", worker k writes its share into a file of its own
 * (OUTPUT.k, allocated alike) instead of into OUTPUT: the same bytes, the same page cache, but no
 * file written by two workers. ext4 takes a file's inode lock for each buffered write (XFS too),
 * so the writes of several workers into one file follow each other; this mode shows what the same
 * writes would gain from a second core without that lock (bench/test_bench_scale.py).
 * Usage: floor INPUT OUTPUT WANT WORKERS [threads] [touch] [separate]; exits 0 when every write
 * was whole. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#define CHUNK (1 << 20)
#define TOUCH_STRIDE 512

static uint8_t *whole;
static size_t size, want;
static int out_fd, threads, failed, touch, separate;
static int out_fds[64];
static volatile uint64_t touched;

static void *share(void *arg) {
    size_t k = (size_t)(uintptr_t)arg, n = (size + CHUNK - 1) / CHUNK;
    for (size_t i = k; i < n; i += threads) {
        size_t at = i * CHUNK, len = size - at < CHUNK ? size - at : CHUNK;
        if (madvise(whole + at, len, MADV_POPULATE_READ) != 0)
            madvise(whole + at, len, MADV_WILLNEED);
        if (touch) {
            uint64_t sum = 0;
            for (size_t j = 0; j < len; j += TOUCH_STRIDE)
                sum += whole[at + j];
            touched += sum;
        }
        size_t a = (size_t)((unsigned __int128)at * want / size);
        size_t b = (size_t)((unsigned __int128)(at + len) * want / size);
        for (size_t done = 0; done < b - a;) {
            ssize_t w = pwrite(separate ? out_fds[k] : out_fd, whole + at + done, b - a - done, a + done);
            if (w <= 0) {
                failed = 1;
                break;
            }
            done += w;
        }
        madvise(whole + at, len, MADV_DONTNEED);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 8)
        return 2;
    int use_threads = 0;
    for (int a = 5; a < argc; a++) {
        if (strcmp(argv[a], "threads") == 0)
            use_threads = 1;
        else if (strcmp(argv[a], "touch") == 0)
            touch = 1;
        else if (strcmp(argv[a], "separate") == 0)
            separate = 1;
        else
            return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    out_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    want = strtoull(argv[3], NULL, 10);
    threads = atoi(argv[4]);
    struct stat st;
    if (fd < 0 || out_fd < 0 || threads < 1 || fstat(fd, &st) != 0 || st.st_size == 0)
        return 2;
    size = st.st_size;
    whole = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (whole == MAP_FAILED)
        return 2;
    struct statfs fs;
    int allocated = want > 0 && fstatfs(out_fd, &fs) == 0 && fs.f_type == 0xEF53 &&
                    fallocate(out_fd, 0, 0, (off_t)size) == 0;
    for (int k = 0; separate && k < threads && k < 64; k++) {
        char name[4096];
        snprintf(name, sizeof name, "%s.%d", argv[2], k);
        out_fds[k] = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out_fds[k] < 0 || (allocated && fallocate(out_fds[k], 0, 0, (off_t)size) != 0))
            return 2;
    }
    pthread_t t[64];
    pid_t pids[64];
    for (int k = 1; k < threads && k < 64; k++) {
        if (use_threads) {
            pthread_create(&t[k], NULL, share, (void *)(uintptr_t)k);
        } else if ((pids[k] = fork()) == 0) {
            share((void *)(uintptr_t)k);
            _exit(failed);
        }
    }
    share(0);
    for (int k = 1; k < threads && k < 64; k++) {
        if (use_threads) {
            pthread_join(t[k], NULL);
        } else {
            int status = 1;
            if (pids[k] < 0 || waitpid(pids[k], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
                failed = 1;
        }
    }
    if (allocated && ftruncate(out_fd, (off_t)want) != 0)
        failed = 1;
    for (int k = 0; separate && k < threads && k < 64; k++) {
        char name[4096];
        snprintf(name, sizeof name, "%s.%d", argv[2], k);
        if (unlink(name) != 0)      /* (the bench times a write, not a file kept) */
            failed = 1;
        close(out_fds[k]);
    }
    return failed;
}
