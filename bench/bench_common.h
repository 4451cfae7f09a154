/*
 * What the benchmarks share: the clock, the machine's load, stand-in data,
 * a check of OpenBLAS's kernel set, and a program
 * running beside the benchmark (the PyTorch or ONNX Runtime side) that
 * answers one timing request per line. Plain libc: bench/ programs built on
 * the public headers only can use it.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Monotonic seconds. */
double bench_now(void);
/* The 1-minute load average from /proc/loadavg; -1 when unknown. */
double bench_load_average(void);

/* n normal numbers of mean 0 and deviation sd, the same for the same seed
 * on any machine (the benchmarks' stand-in features and images). */
void bench_fill_normal(float *x, size_t n, unsigned long long seed, double sd);

/* Warns on stderr when core (grad_blas_core()) is OpenBLAS's generic
 * "Prescott" set, which runs several times slower than the CPU allows: the
 * figures would not say what this machine can do. */
void bench_check_blas_core(const char *core);

/* A program running beside us: requests on `to`, answers on `from`. */
typedef struct bench_side {
  pid_t pid;
  FILE *to, *from;
} bench_side;

/* Starts argv[0] with argv and waits for its "ready"; 0 when it cannot
 * (then says so on stderr, naming the side as what). */
int bench_side_start(bench_side *t, char *const argv[], const char *what);
/* Sends one request line and reads a number back; -1 on failure. */
double bench_side_ask(bench_side *t, const char *request);
/* Closes its input (the program exits) and waits for it. */
void bench_side_stop(bench_side *t);

#endif
