/*
 * Training speed of the grid feature store: seconds per epoch over ~250
 * cached feature maps of 28 x 28 (random features stand in for the
 * backbone's, which is benchmarked elsewhere), ours and PyTorch's
 * (bench_train_torch.py, spawned with /usr/bin/python3 or $GRAD_BENCH_PYTHON;
 * skipped when torch is missing) side by side, with the ratio, the fraction
 * of this machine's sgemm peak, and each side's memory peak.
 *
 * Ours is the public grad_store_train (experimental tier), the loop
 * grad_model_train runs: its progress callback marks the steps, and stops
 * the run once the steps to time are done. Per step: shuffled batches of
 * 16 (the last of an epoch partial), coordinate noise with probability 0.5
 * (the PyTorch side adds it on every other step).
 *
 * Each configuration runs in its own child process, so the memory peaks
 * (getrusage ru_maxrss) are per configuration. Epoch times are extrapolated
 * from the steps timed: seconds per image of the timed steps x images,
 * after two untimed warm-up steps on each side (WARM_UP_STEPS).
 * Public headers only, linked to the shared library like a user's program.
 *
 * Usage: bench_train [--images N] [--threads T] [--steps K]
 *                    [--config NAME|C:BLOCKS[:E]] [--no-torch] [--no-pca]
 *                    [--gemm auto|openblas|onednn] [--precision fp32|bf16]
 * (--precision: ours; PyTorch's side stays fp32.) It also times the PCA channel reduction (grad_reduction_fit_*, also
 * experimental) for ResNet-18 (layer2 + layer3: 384 channels) and
 * WideResNet-50-2 (1536) features.
 */
#define GRAD_EXPERIMENTAL /* grad_store_*, grad_reduction_fit_*, grad_blas_core */
#include <cblas.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grad/grad.h>

#include "bench_common.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

enum { SIZE = 28, BATCH = 16 };

typedef struct bench_config {
  const char *name;
  int channels, blocks;
  int steps;   /* steps timed by default; 0: one epoch (the big ones take minutes a step) */
  int expansion; /* 0: BasicBlock decoder; else CRAD's bottlenecks of this width */
} bench_config;

/* The proposed CPU default, a middle point, the paper-like store
 * (EfficientNet-b4's 216 channels, 7 decoder blocks) and CRAD's two
 * (11 bottlenecks of width 864 or 216; docs/store.md). */
static const bench_config configs[] = {
  {"cpu-default", 64, 2, 0, 0},
  {"mid", 128, 4, 2, 0},
  {"paper", 216, 7, 1, 0},
  {"crad", 216, 11, 1, 864},
  /* a step is about a second: a whole epoch (16 steps), as for cpu-default.
   * 4 steps read 1.42-1.66x PyTorch over ten runs, the epoch 1.50-1.61x
   * over six (docs/results.md): its steps differ (coordinate noise drawn
   * per step), and a few of them are a noisy sample of an epoch. */
  {"crad-s", 216, 11, 0, 216},
};
enum { CONFIGS = sizeof configs / sizeof configs[0] };

typedef struct result {
  double seconds_per_image;
  double cpu_seconds_per_image;  /* user + system time of the process: less sensitive to load */
  long maxrss_kb;
  int status;  /* 0 ok */
} result;

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
         (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* Floating-point operations of one training step per image: the
 * convolutions (1x1 local net, 3x3 decoder, 1x1 output) forward, plus the
 * input and weight gradients backward (2x forward). */
static double train_flops_per_image(const bench_config *c) {
  double C = c->channels, P = (double)SIZE * SIZE, C2 = 2 * C, E = c->expansion;
  /* CRAD: 1x1 expand, depthwise 3x3, 1x1 project (SE is negligible) */
  double block = E ? (C2 * E + 9 * E + E * C2) : 2 * (C2 * C2 * 9);
  double macs = (C * C + 2 * C) * P + c->blocks * block * P + C * C2 * P;
  return 3 * 2 * macs;
}

/* Best of a few 1024^3 sgemm calls, in FLOP/s. */
static double sgemm_peak(void) {
  const int n = 1024;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) {
    free(a), free(b), free(c);
    return 0;
  }
  for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < 8; r++) { /* the best of several: the cores are often shared */
    double t = bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    t = bench_now() - t;
    if (t < best) best = t;
  }
  free(a), free(b), free(c);
  return 2.0 * n * n * (double)n / best;
}

/* Untimed steps before the timed ones, on both sides: an epoch's time is
 * a steady step's. The first step makes the primitives and touches every
 * buffer; ours also outgrows its workspace there, which the second step
 * then gets as one block at the peak and touches afresh (1.1 GB for
 * CRAD-s: once per training run, but four timed steps would count it four
 * times per epoch). PyTorch's caching allocator is steady after one. */
enum { WARM_UP_STEPS = 2 };

/* What the progress callback sees of a timed run: the steps are marked
 * as they end; the first warm_up ones are left out. */
typedef struct step_clock {
  int images, warm_up, steps;  /* steps to time, after warm_up untimed ones */
  int done;                    /* steps ended so far */
  long seen;                   /* images of the timed steps */
  double start, cpu_start, wall, cpu;
} step_clock;

static int on_step(const grad_train_progress *p, void *user) {
  step_clock *c = user;
  c->done++;
  if (c->done <= c->warm_up) {
    c->start = bench_now(), c->cpu_start = cpu_now();
    return 0;
  }
  c->seen += p->step < p->steps_per_epoch ? BATCH : c->images - (p->steps_per_epoch - 1) * BATCH;
  if (c->done < c->warm_up + c->steps) return 0;
  c->wall = bench_now() - c->start;
  c->cpu = cpu_now() - c->cpu_start;
  return 1; /* enough: stop the run (GRAD_E_CANCELLED) */
}

/* Ours, in this (child) process: `steps` steps of the training loop, after
 * WARM_UP_STEPS untimed ones when warm_up is set (else timed from the
 * call, which first wraps the features: no copy). */
/* grad_train_options.precision of our runs (--precision). */
static grad_precision train_precision = GRAD_PRECISION_FP32;

static result run_ours(const bench_config *c, int images, int steps, bool warm_up) {
  result r = {0, 0, 0, 1};
  grad_store_options so;
  grad_store_options_init(&so, sizeof so);
  so.channels = c->channels, so.height = SIZE, so.width = SIZE, so.blocks = c->blocks;
  so.decoder = c->expansion ? "crad" : "basic";
  so.expansion = c->expansion;
  so.seed = 1;
  size_t count = (size_t)images * c->channels * SIZE * SIZE;
  float *features = malloc(count * sizeof(float));
  grad_store *store = NULL;
  grad_status st = features ? grad_store_create(&so, &store) : GRAD_E_NOMEM;
  if (st != GRAD_OK) {
    fprintf(stderr, "bench_train: %s\n", features ? grad_last_error() : "out of memory");
    goto done;
  }
  bench_fill_normal(features, count, 2, 1.0);
  step_clock clock = {images, warm_up ? WARM_UP_STEPS : 0, steps, 0, 0, 0, 0, 0, 0};
  int epoch_steps = (images + BATCH - 1) / BATCH;
  grad_train_options o;
  grad_train_options_init(&o, sizeof o);
  o.batch = BATCH;
  o.epochs = (clock.warm_up + steps + epoch_steps - 1) / epoch_steps;
  o.progress = on_step;
  o.progress_user = &clock;
  o.precision = train_precision;
  clock.start = bench_now(), clock.cpu_start = cpu_now();
  st = grad_store_train(store, features, images, &o);
  if (st != GRAD_E_CANCELLED || clock.seen == 0) {
    fprintf(stderr, "bench_train: %s\n", st == GRAD_OK ? "the run ended early" : grad_last_error());
    goto done;
  }
  r.seconds_per_image = clock.wall / (double)clock.seen;
  r.cpu_seconds_per_image = clock.cpu / (double)clock.seen;
  r.status = 0;
done:
  {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r.maxrss_kb = ru.ru_maxrss;
  }
  grad_store_free(store);
  free(features);
  return r;
}

static result run_ours_isolated(const bench_config *c, int images, int steps, bool warm_up) {
  result r = {0, 0, 0, 1};
  int fds[2];
  if (pipe(fds) != 0) return r;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    result mine = run_ours(c, images, steps, warm_up);
    ssize_t w = write(fds[1], &mine, sizeof mine);
    _exit(w == (ssize_t)sizeof mine ? 0 : 1);
  }
  close(fds[1]);
  if (pid > 0) {
    if (read(fds[0], &r, sizeof r) != (ssize_t)sizeof r) r.status = 1;
    waitpid(pid, NULL, 0);
  }
  close(fds[0]);
  return r;
}

/* PyTorch: seconds per step (of BATCH images); status 77 = skipped. */
static result run_torch(const bench_config *c, int steps, int threads) {
  result r = {0, 0, 0, 1};
  const char *python = getenv("GRAD_BENCH_PYTHON");
  if (!python) python = "/usr/bin/python3";
  if (access(python, X_OK) != 0) {
    r.status = 77;
    return r;
  }
  char cmd[1024], line[512] = "";
  snprintf(cmd, sizeof cmd,
           "'%s' '%s/bench_train_torch.py' --channels %d --blocks %d --expansion %d --size %d "
           "--batch %d --steps %d --warm-up %d --threads %d 2>&1",
           python, BENCH_SOURCE_DIR, c->channels, c->blocks, c->expansion, SIZE, BATCH, steps,
           WARM_UP_STEPS, threads);
  fflush(NULL);
  FILE *p = popen(cmd, "r");
  if (!p) return r;
  char buf[512];
  while (fgets(buf, sizeof buf, p))
    if (strstr(buf, "seconds_per_step=") || strstr(buf, "SKIP")) snprintf(line, sizeof line, "%s", buf);
  int status = pclose(p);
  double per_step = 0, cpu_per_step = 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    r.status = 77;
    fprintf(stderr, "bench_train: torch %s", line);
  } else if (sscanf(line, "seconds_per_step=%lf cpu_seconds_per_step=%lf maxrss_kb=%ld",
                    &per_step, &cpu_per_step, &r.maxrss_kb) == 3) {
    r.seconds_per_image = per_step / BATCH;
    r.cpu_seconds_per_image = cpu_per_step / BATCH;
    r.status = 0;
  } else {
    fprintf(stderr, "bench_train: the torch bench failed: %s\n", line);
  }
  return r;
}

/* The channel reduction's cost: fitting on `images` maps of raw x 28 x 28
 * (streamed, as grad_model_train does) and reducing one map to C (the
 * mean of 10 calls after an untimed one). */
static void bench_pca(int raw, int channels, int images) {
  size_t positions = (size_t)SIZE * SIZE, count = (size_t)raw * positions;
  float *x = malloc(count * sizeof(float)), *y = malloc((size_t)channels * positions * 4);
  grad_workspace *ws = NULL;
  grad_reduction_fit *fit = NULL;
  grad_reduction *reduction = NULL;
  unsigned state = 1u;
  double fill = 0, start = bench_now();
  grad_status st = x && y ? grad_workspace_create(&ws) : GRAD_E_NOMEM;
  if (st == GRAD_OK) st = grad_reduction_fit_create(raw, &fit);
  for (int i = 0; i < images && st == GRAD_OK; i++) {
    double t = bench_now();
    for (size_t k = 0; k < count; k++) { /* cheap stand-in features */
      state = state * 1664525u + 1013904223u;
      x[k] = (float)(state >> 8) * (1.0f / 16777216.0f) + (float)(k / positions % 7);
    }
    fill += bench_now() - t;
    st = grad_reduction_fit_add(fit, ws, x, 1, positions);
  }
  double t_fit_add = bench_now() - start - fill, t = bench_now();
  if (st == GRAD_OK) st = grad_reduction_fit_finish(fit, channels, &reduction);
  double t_finish = bench_now() - t;
  /* One untimed call first: the product's first call generates its code. */
  enum { APPLIES = 10 };
  if (st == GRAD_OK) st = grad_reduction_apply(reduction, ws, x, 1, positions, y);
  t = bench_now();
  for (int i = 0; i < APPLIES && st == GRAD_OK; i++)
    st = grad_reduction_apply(reduction, ws, x, 1, positions, y);
  double t_apply = (bench_now() - t) / APPLIES;
  if (st != GRAD_OK)
    printf("pca %d -> %d: failed: %s\n", raw, channels, grad_last_error());
  else
    printf("pca %4d -> %3d over %d maps: covariance %.2f s, eigen %.2f s, reduce %.2f ms/map\n",
           raw, channels, images, t_fit_add, t_finish, 1e3 * t_apply);
  grad_reduction_free(reduction);
  grad_reduction_fit_free(fit);
  grad_workspace_free(ws);
  free(x), free(y);
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: bench_train [--images N] [--threads T] [--steps K]\n"
          "                   [--config NAME|C:BLOCKS[:E]] [--no-torch] [--no-pca]\n"
          "                   [--gemm auto|openblas|onednn] [--precision fp32|bf16]\n"
          "  seconds per training epoch over N (250) random 28x28 feature maps, ours and\n"
          "  PyTorch's; K steps timed per configuration (default: an epoch, 2, 1)\n");
}

int main(int argc, char **argv) {
  int images = 250, threads = 2, steps = 0;
  bool torch = true, pca = true;
  const char *only = NULL;
  static const struct option longopts[] = {
    {"images", required_argument, NULL, 'n'}, {"threads", required_argument, NULL, 't'},
    {"steps", required_argument, NULL, 's'},
    {"config", required_argument, NULL, 'c'}, {"no-torch", no_argument, NULL, 'x'},
    {"no-pca", no_argument, NULL, 'q'},       {"help", no_argument, NULL, 'h'},
    {"gemm", required_argument, NULL, 'g'}, {"precision", required_argument, NULL, 'p'},
    {NULL, 0, NULL, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (opt) {
      case 'n': images = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      case 's': steps = atoi(optarg); break;
      case 'c': only = optarg; break;
      case 'x': torch = false; break;
      case 'q': pca = false; break;
      case 'g': { /* the engine of the products (grad_gemm_engine_set) */
        const bool known = !strcmp(optarg, "auto") || !strcmp(optarg, "onednn") ||
                           !strcmp(optarg, "openblas");
        if (!known) {
          fprintf(stderr, "bench_train: --gemm takes auto, openblas or onednn, not %s\n", optarg);
          return 2;
        }
        grad_gemm_engine engine = !strcmp(optarg, "onednn")     ? GRAD_GEMM_ONEDNN
                                  : !strcmp(optarg, "openblas") ? GRAD_GEMM_OPENBLAS
                                                                : GRAD_GEMM_AUTO;
        if (grad_gemm_engine_set(engine) != GRAD_OK) {
          fprintf(stderr, "bench_train: %s\n", grad_last_error());
          return 2;
        }
        break;
      }
      case 'p':
        if (strcmp(optarg, "fp32") && strcmp(optarg, "bf16")) {
          fprintf(stderr, "bench_train: --precision takes fp32 or bf16, not %s\n", optarg);
          return 2;
        }
        train_precision = strcmp(optarg, "bf16") ? GRAD_PRECISION_FP32 : GRAD_PRECISION_BF16;
        break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (images < 1 || threads < 1 || steps < 0) {
    usage(stderr);
    return 2;
  }
  int epoch_steps = (images + BATCH - 1) / BATCH;
  grad_threads_set(threads);
  double peak = sgemm_peak();
  const char *core = grad_blas_core();
  bench_check_blas_core(core);
  printf("bench_train: %d feature maps of C x %d x %d, batch %d, %d threads (OpenBLAS kernels "
         "for %s; products on %s); ours in %s, PyTorch in fp32; sgemm peak %.1f GFLOP/s; load "
         "average %.2f at start\n",
         images, SIZE, SIZE, BATCH, threads, core ? core : "?", grad_gemm_engine_name(),
         grad_precision_name(train_precision), peak * 1e-9, bench_load_average());
  printf("%-12s %4s %6s %5s | %9s %9s %6s | %9s %9s %6s | %7s %5s | %7s %8s\n", "config",
         "C", "blocks", "steps", "ours s", "torch s", "ratio", "ours cpu", "torch cpu", "ratio",
         "GFLOP/s", "%peak", "ours MB", "torch MB");
  bench_config custom = {"custom", 0, 0, 0, 0};
  bool is_custom =
      only && sscanf(only, "%d:%d:%d", &custom.channels, &custom.blocks, &custom.expansion) >= 2 &&
      custom.channels > 0 && custom.blocks >= 0 && custom.expansion >= 0;
  for (int i = 0; i < (is_custom ? 1 : CONFIGS); i++) {
    const bench_config *c = is_custom ? &custom : &configs[i];
    if (!is_custom && only && strcmp(only, c->name) != 0) continue;
    int k = steps ? steps : c->steps ? c->steps : epoch_steps;
    /* WARM_UP_STEPS untimed steps on both sides (the PyTorch script takes
     * as many: --warm-up). */
    result ours = run_ours_isolated(c, images, k, true);
    result theirs = {0, 0, 0, 77};
    if (torch) theirs = run_torch(c, k, threads);
    double ours_epoch = ours.seconds_per_image * images;
    double gflops = ours.status == 0 ? train_flops_per_image(c) / ours.seconds_per_image * 1e-9 : 0;
    char torch_epoch[32] = "skipped", ratio[32] = "-", torch_cpu[32] = "-", cpu_ratio[32] = "-",
         torch_mb[32] = "-";
    if (theirs.status == 0) {
      snprintf(torch_epoch, sizeof torch_epoch, "%.1f", theirs.seconds_per_image * images);
      snprintf(ratio, sizeof ratio, "%.2fx", theirs.seconds_per_image / ours.seconds_per_image);
      snprintf(torch_cpu, sizeof torch_cpu, "%.1f", theirs.cpu_seconds_per_image * images);
      snprintf(cpu_ratio, sizeof cpu_ratio, "%.2fx",
               theirs.cpu_seconds_per_image / ours.cpu_seconds_per_image);
      snprintf(torch_mb, sizeof torch_mb, "%.0f", theirs.maxrss_kb / 1024.0);
    }
    if (ours.status != 0) {
      printf("%-12s %4d %6d %5d | failed\n", c->name, c->channels, c->blocks, k);
      continue;
    }
    printf("%-12s %4d %6d %5d | %9.1f %9s %6s | %9.1f %9s %6s | %7.1f %4.0f%% | %7.0f %8s\n",
           c->name, c->channels, c->blocks, k, ours_epoch, torch_epoch, ratio,
           ours.cpu_seconds_per_image * images, torch_cpu, cpu_ratio, gflops,
           peak > 0 ? 100.0 * gflops * 1e9 / peak : 0.0, ours.maxrss_kb / 1024.0, torch_mb);
    fflush(stdout);
  }
  printf("seconds per epoch (wall, and CPU time of the process); ratio = torch / ours (above 1: "
         "we are faster)\n");
  if (pca) {
    bench_pca(384, 64, images);
    bench_pca(1536, 64, images);
  }
  printf("load average %.2f at end\n", bench_load_average());
  return 0;
}
