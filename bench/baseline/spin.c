/* What this machine gives a second worker for work that needs only a core
 * (bench/test_bench_scale.py, "compute scaling"): WORKERS forked processes share ITERATIONS
 * steps of an xorshift generator, which touch no memory beyond registers; the caller times the
 * command with 1 and with 2 workers. Beside pfilter's scaling in the same run, it tells a busy
 * host (both low) from work bound by memory or by the kernel (this one high, pfilter's lower).
 * Usage: spin ITERATIONS WORKERS; exits 0. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t steps(uint64_t x, long n) {
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    long total = atol(argv[1]);
    int workers = atoi(argv[2]);
    if (total < 1 || workers < 1 || workers > 64)
        return 2;
    int failed = 0;
    for (int k = 1; k < workers; k++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(steps((uint64_t)k + 1, total / workers) == 0);   /* (never 0: keeps the loop) */
        if (pid < 0)
            failed = 1;
    }
    failed |= steps(1, total / workers) == 0;
    for (int k = 1; k < workers; k++) {
        int status = 1;
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
            failed = 1;
    }
    return failed;
}
