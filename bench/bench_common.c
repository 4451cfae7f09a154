/* What the benchmarks share (bench_common.h). */
#define _POSIX_C_SOURCE 200809L
#include "bench_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bench_load_average(void) {
  double load = -1.0;
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fscanf(f, "%lf", &load) != 1) load = -1.0;
    fclose(f);
  }
  return load;
}

void bench_fill_normal(float *x, size_t n, unsigned long long seed, double sd) {
  unsigned long long state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i += 2) {
    double u[2];
    for (int k = 0; k < 2; k++) { /* splitmix64 -> a uniform in (0, 1] */
      unsigned long long z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      u[k] = ((double)((z ^ (z >> 31)) >> 11) + 1.0) * 0x1.0p-53;
    }
    double r = sd * sqrt(-2.0 * log(u[0])), a = 6.283185307179586 * u[1];
    x[i] = (float)(r * cos(a)); /* Box-Muller: two normals per pair */
    if (i + 1 < n) x[i + 1] = (float)(r * sin(a));
  }
}

void bench_check_blas_core(const char *core) {
  if (core && strcmp(core, "Prescott") == 0)
    fprintf(stderr, "warning: OpenBLAS runs its generic Prescott kernels (it did not recognise "
                    "this CPU): set OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) and "
                    "run again, or the figures undersell the machine\n");
}

/* Starts argv[0] with argv and waits for its "ready"; 0 when it cannot. */
int bench_side_start(bench_side *t, char *const argv[], const char *what) {
  if (access(argv[0], X_OK) != 0) {
    fprintf(stderr, "%s skipped: %s not found\n", what, argv[0]);
    return 0;
  }
  int down[2], up[2];
  if (pipe(down) || pipe(up)) return 0;
  fflush(NULL);
  t->pid = fork();
  if (t->pid < 0) return 0;
  if (t->pid == 0) {
    dup2(down[0], 0);
    dup2(up[1], 1);
    close(down[0]), close(down[1]), close(up[0]), close(up[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(down[0]);
  close(up[1]);
  t->to = fdopen(down[1], "w");
  t->from = fdopen(up[0], "r");
  char line[64];
  if (!t->to || !t->from || !fgets(line, sizeof line, t->from) || strncmp(line, "ready", 5)) {
    fprintf(stderr, "%s skipped: it did not start\n", what);
    return 0;
  }
  return 1;
}

/* Sends one request line and reads a number back; -1 on failure. */
double bench_side_ask(bench_side *t, const char *request) {
  char line[128];
  fprintf(t->to, "%s\n", request);
  fflush(t->to);
  if (!fgets(line, sizeof line, t->from)) return -1.0;
  char *end = NULL;
  double v = strtod(line, &end);
  return end == line ? -1.0 : v;
}

void bench_side_stop(bench_side *t) {
  if (t->to) fclose(t->to); /* end of input: the program exits */
  if (t->from) fclose(t->from);
  if (t->pid > 0) waitpid(t->pid, NULL, 0);
}

