/*
 * The engines of libgrad's matrix products (grad_sgemm) on the shapes
 * libgrad runs at 224 px (feature maps 28 x 28 = 784 positions): GFLOP/s
 * through OpenBLAS with the kernels it picked for this CPU, through OpenBLAS
 * forced to its Haswell (AVX2) kernels (OPENBLAS_CORETYPE=Haswell, in a
 * second process: OpenBLAS reads it once, at load) and through oneDNN's
 * sgemm on the pool; 1 and 2 threads, interleaved rounds, best of rounds.
 * Two figures each: GFLOP per second of wall time (the best of short
 * batches), which other processes on the cores lower, and GFLOP per CPU
 * second of the process (all its
 * threads), which says what the work costs (OpenBLAS's threads also spin
 * between products) and stays steady when other work shares the cores.
 *
 * Public API only (the experimental grad_sgemm and grad_gemm_engine_set).
 * Usage: bench_sgemm [rounds (5)]
 */
#define GRAD_EXPERIMENTAL /* grad_sgemm, grad_gemm_engine_*, grad_blas_core */
#include <grad/grad.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_common.h"

typedef struct shape {
  const char *what;
  bool ta, tb;
  int m, n, k;
  float beta;
} shape;

/* Where each runs: docs/guide.md ("Threads"). */
static const shape shapes[] = {
    {"PCA projection, resnet18 l2+l3 384 -> 64", false, false, 64, 784, 384, 0.0f},
    {"local coordinate net 1x1, C 64", false, false, 64, 784, 64, 0.0f},
    {"local coordinate net 1x1, C 216 (presets)", false, false, 216, 784, 216, 0.0f},
    {"CRAD expand 1x1 432 -> 864", false, false, 864, 784, 432, 0.0f},
    {"CRAD project 1x1 864 -> 432", false, false, 432, 784, 864, 0.0f},
    {"CRAD output 1x1 432 -> 216", false, false, 216, 784, 432, 0.0f},
    {"CRAD-s project 1x1 216 -> 432", false, false, 432, 784, 216, 0.0f},
    {"CRAD expand, weight gradient", false, true, 864, 432, 784, 1.0f},
    {"CRAD expand, input gradient", true, false, 432, 784, 864, 1.0f},
    {"EfficientNet-b4 1x1 160 -> 960 at 14x14", false, false, 960, 196, 160, 0.0f},
    {"resnet18 layer2 3x3 on the im2col engine", false, false, 128, 784, 1152, 0.0f},
};
enum { SHAPES = sizeof shapes / sizeof shapes[0] };

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
         1e-6 * u.ru_stime.tv_usec;
}

static double last_per_cpu;

/* GFLOP/s of one shape through `engine` on `threads` threads, the best of
 * 10 batches of calls of about 15 ms each (a batch that got both cores when
 * other work let it), and GFLOP per CPU second over all of them in
 * last_per_cpu; after a warm-up call. */
static double measure(grad_gemm_engine engine, int threads, const shape *s) {
  const int arows = s->ta ? s->k : s->m, acols = s->ta ? s->m : s->k;
  const int brows = s->tb ? s->n : s->k, bcols = s->tb ? s->k : s->n;
  float *a = malloc(sizeof(float) * arows * acols), *b = malloc(sizeof(float) * brows * bcols);
  float *c = calloc((size_t)s->m * s->n, sizeof(float));
  if (!a || !b || !c) return -1.0;
  bench_fill_normal(a, (size_t)arows * acols, 1, 1.0);
  bench_fill_normal(b, (size_t)brows * bcols, 2, 1.0);
  grad_threads_set(threads);
  grad_gemm_engine_set(engine);
  grad_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, acols, b, bcols, s->beta, c, s->n, threads);
  const double flop = 2e-9 * s->m * s->n * s->k;
  double best = 0.0, cpu = cpu_seconds();
  long total = 0;
  for (int batch = 0; batch < 10; batch++) {
    int calls = 0;
    double start = bench_now(), now;
    do {
      grad_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, acols, b, bcols, s->beta, c, s->n,
                 threads);
      calls++;
    } while ((now = bench_now()) - start < 0.015 || calls < 3);
    if (flop * calls / (now - start) > best) best = flop * calls / (now - start);
    total += calls;
  }
  last_per_cpu = flop * total / (cpu_seconds() - cpu);
  grad_gemm_engine_set(GRAD_GEMM_AUTO);
  free(a);
  free(b);
  free(c);
  return best;
}

/* The second process: "ENGINE THREADS SHAPE" answers GFLOP/s, "cpu" the last
 * measurement's GFLOP per CPU second, "auto" the engine the rule picks here. */
static int serve(void) {
  printf("ready\n");
  fflush(stdout);
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    int engine, threads, index;
    if (strncmp(line, "cpu", 3) == 0)
      printf("%g\n", last_per_cpu);
    else if (strncmp(line, "auto", 4) == 0)
      printf("%d\n", strncmp(grad_gemm_engine_name(), "oneDNN", 6) == 0 ? GRAD_GEMM_ONEDNN
                                                                        : GRAD_GEMM_OPENBLAS);
    else if (sscanf(line, "%d %d %d", &engine, &threads, &index) == 3 && index >= 0 &&
             index < SHAPES)
      printf("%g\n", measure((grad_gemm_engine)engine, threads, &shapes[index]));
    else
      printf("-1\n");
    fflush(stdout);
  }
  return 0;
}

static void cpu_name(char *out, size_t size) {
  snprintf(out, size, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[256], name[128] = "", family[16] = "", model[16] = "";
  while (fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    char *value = colon + 2;
    value[strcspn(value, "\n")] = 0;
    if (!*name && strncmp(line, "model name", 10) == 0) snprintf(name, sizeof name, "%s", value);
    if (!*family && strncmp(line, "cpu family", 10) == 0)
      snprintf(family, sizeof family, "%s", value);
    if (!*model && strncmp(line, "model\t", 6) == 0) snprintf(model, sizeof model, "%s", value);
  }
  fclose(f);
  snprintf(out, size, "%s (family %s, model %s)", name, family, model);
}

enum { ENGINES = 3, NATIVE = 0, HASWELL = 1, ONEDNN = 2 };

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--serve") == 0) return serve();
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (rounds < 1) rounds = 1;
  char cpu[256];
  cpu_name(cpu, sizeof cpu);

  bench_side haswell = {0};
  char *side_argv[] = {"/proc/self/exe", "--serve", NULL};
  const char *given = getenv("OPENBLAS_CORETYPE");
  char *saved = given ? strdup(given) : NULL;
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  int have_side = bench_side_start(&haswell, side_argv, "OpenBLAS Haswell");
  if (saved)
    setenv("OPENBLAS_CORETYPE", saved, 1);
  else
    unsetenv("OPENBLAS_CORETYPE");
  free(saved);

  printf("bench_sgemm: %s; %d rounds, interleaved; load average %.2f at start\n", cpu, rounds,
         bench_load_average());
  bench_check_blas_core(grad_blas_core());
  printf("OpenBLAS here: %s kernels; libgrad's products here: %s\n", grad_blas_core(),
         grad_gemm_engine_name());
  if (have_side)
    printf("OpenBLAS with OPENBLAS_CORETYPE=Haswell: the rule picks %s there\n",
           bench_side_ask(&haswell, "auto") == GRAD_GEMM_ONEDNN ? "oneDNN" : "OpenBLAS");

  /* [shape][threads - 1][engine]: best wall GFLOP/s, best GFLOP per CPU second */
  double wall[SHAPES][2][ENGINES] = {{{0}}}, per_cpu[SHAPES][2][ENGINES] = {{{0}}};
  for (int round = 0; round < rounds; round++)
    for (int i = 0; i < SHAPES; i++)
      for (int t = 0; t < 2; t++)
        for (int e0 = 0; e0 < ENGINES; e0++) {
          const int e = (e0 + round + i) % ENGINES; /* each engine goes first in turn */
          double gflops = -1.0, cpu_rate = 0.0;
          if (e == HASWELL) {
            if (!have_side) continue;
            char request[64];
            snprintf(request, sizeof request, "%d %d %d", (int)GRAD_GEMM_OPENBLAS, t + 1, i);
            gflops = bench_side_ask(&haswell, request);
            cpu_rate = bench_side_ask(&haswell, "cpu");
          } else {
            gflops = measure(e == NATIVE ? GRAD_GEMM_OPENBLAS : GRAD_GEMM_ONEDNN, t + 1,
                             &shapes[i]);
            cpu_rate = last_per_cpu;
          }
          if (gflops > wall[i][t][e]) wall[i][t][e] = gflops;
          if (cpu_rate > per_cpu[i][t][e]) per_cpu[i][t][e] = cpu_rate;
        }
  if (have_side) bench_side_stop(&haswell);

  for (int table = 0; table < 2; table++) {
    double(*v)[2][ENGINES] = table ? wall : per_cpu;
    printf("\n%s, best of %d rounds; 1 and 2 threads\n",
           table ? "GFLOP per second of wall time (best 15 ms batch)" : "GFLOP per CPU second",
           rounds);
    printf("%-42s %-15s| %-13s| %-13s| %-13s| oneDNN / Haswell\n", "product", "m x n x k",
           "OpenBLAS own", "OB Haswell", "oneDNN");
    for (int i = 0; i < SHAPES; i++) {
      const shape *s = &shapes[i];
      char dims[32];
      snprintf(dims, sizeof dims, "%dx%dx%d%s", s->m, s->n, s->k,
               s->ta ? " TN" : s->tb ? " NT" : "");
      printf("%-42s %-15s", s->what, dims);
      for (int e = 0; e < ENGINES; e++) printf("| %5.0f %5.0f  ", v[i][0][e], v[i][1][e]);
      if (v[i][0][HASWELL] > 0 && v[i][1][HASWELL] > 0)
        printf("| %.2fx %.2fx", v[i][0][ONEDNN] / v[i][0][HASWELL],
               v[i][1][ONEDNN] / v[i][1][HASWELL]);
      printf("\n");
    }
  }
  printf("load average %.2f at the end\n", bench_load_average());
  return 0;
}
