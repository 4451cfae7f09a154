/*
 * bench_backbone: libgrad's backbone against PyTorch's on the same input and
 * thread count, in one run. For resnet18 and wide_resnet50_2 up to layer3
 * (the usual layer2 + layer3 features) at 224 x 224, batch 1 and 8, prints
 * ms/image for both, their ratio, the convolutions' GFLOP/s (2 x multiply-
 * adds of every conv, over the whole forward time) and that as a fraction
 * of this machine's sgemm peak (a 2048^3 sgemm, measured each round; the
 * highest is used). The PyTorch column comes from bench_backbone_torch.py
 * (next to this file, run with /usr/bin/python3 or $GRAD_BENCH_PYTHON),
 * kept running beside this program: each round times every configuration
 * on our side and then on PyTorch's, back to back, and the best of all
 * rounds counts on both sides, so drifts in the machine's speed (these
 * cores are shared) hit both alike. The column is skipped when the script
 * or torch is absent.
 *
 * Usage: bench_backbone [--threads T] [--reps R] [--rounds N] [--size S] [--no-torch]
 *
 * OpenBLAS 0.3.21 does not know recent Xeons and falls back to its generic
 * Prescott (SSE3) kernels, about 8x slower than the AVX-512 ones. When that
 * happens and OPENBLAS_CORETYPE is not set, the benchmark sets it (SkylakeX
 * with AVX-512, Haswell with AVX2) and runs itself again; it prints the
 * kernels used either way.
 */
#include <cblas.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backbone_internal.h"
#include "blas_kernels.h"
#include "rng.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double load_average(void) {
  double load = -1.0;
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fscanf(f, "%lf", &load) != 1) load = -1.0;
    fclose(f);
  }
  return load;
}

/* Best of 3 square sgemms of side n, in FLOP/s. */
static double sgemm_peak(int n) {
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
  float *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) return 0.0;
  for (int i = 0; i < n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    double t = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    t = now() - t;
    if (r > 0 && t < best) best = t;
  }
  free(a), free(b), free(c);
  return 2.0 * n * n * n / best;
}

/* Multiply-adds of one image through every conv (stem, blocks, downsamples). */
static double backbone_macs(const grad_backbone *bb) {
  double macs = grad__conv_macs(&bb->stem.shape, bb->input_size, bb->input_size);
  int size = bb->stage_size[1];
  for (int b = 0; b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    int in = size;
    for (int i = 0; i < blk->convs; i++) {
      macs += grad__conv_macs(&blk->conv[i].shape, in, in);
      in = grad__conv_out_size(&blk->conv[i].shape, in);
    }
    if (blk->downsample) macs += grad__conv_macs(&blk->down.shape, size, size);
    size = in;
  }
  return macs;
}

typedef struct run {
  const char *arch;
  int batch;
  double ours_ms;   /* per image, best so far */
  double torch_ms;  /* per image, best so far; < 0 when not measured */
} run;

/* The PyTorch script, running beside us: requests on `to`, answers on `from`. */
typedef struct torch_side {
  pid_t pid;
  FILE *to, *from;
} torch_side;

static int torch_start(torch_side *t, int threads, int size, const char *input_path) {
  const char *python = getenv("GRAD_BENCH_PYTHON");
  if (!python) python = "/usr/bin/python3";
  char script[1024], thr[16], sz[16];
  snprintf(script, sizeof script, "%s/bench_backbone_torch.py", BENCH_SOURCE_DIR);
  if (access(python, X_OK) != 0 || access(script, R_OK) != 0) {
    fprintf(stderr, "PyTorch column skipped: %s or %s not found\n", python, script);
    return 0;
  }
  int down[2], up[2];
  if (pipe(down) || pipe(up)) return 0;
  snprintf(thr, sizeof thr, "%d", threads);
  snprintf(sz, sizeof sz, "%d", size);
  fflush(NULL);
  t->pid = fork();
  if (t->pid < 0) return 0;
  if (t->pid == 0) {
    dup2(down[0], 0);
    dup2(up[1], 1);
    close(down[0]), close(down[1]), close(up[0]), close(up[1]);
    execl(python, python, script, "--threads", thr, "--size", sz, "--last-stage", "3", "--input",
          input_path, (char *)NULL);
    _exit(127);
  }
  close(down[0]);
  close(up[1]);
  t->to = fdopen(down[1], "w");
  t->from = fdopen(up[0], "r");
  char line[64];
  if (!t->to || !t->from || !fgets(line, sizeof line, t->from) || strncmp(line, "ready", 5)) {
    fprintf(stderr, "PyTorch column skipped: the script did not start (no torch?)\n");
    return 0;
  }
  return 1;
}

static double torch_time(torch_side *t, const run *r, int reps) {
  double ms = -1.0;
  fprintf(t->to, "%s %d %d\n", r->arch, r->batch, reps);
  fflush(t->to);
  if (fscanf(t->from, "%lf", &ms) != 1) return -1.0;
  return ms;
}

static void torch_stop(torch_side *t) {
  if (t->to) fclose(t->to); /* end of input: the script exits */
  if (t->from) fclose(t->from);
  if (t->pid > 0) waitpid(t->pid, NULL, 0);
}

int main(int argc, char **argv) {
  int threads = 2, reps = 5, rounds = 3, size = 224, use_torch = 1;
  static const struct option options[] = {{"threads", required_argument, NULL, 't'},
                                          {"reps", required_argument, NULL, 'r'},
                                          {"rounds", required_argument, NULL, 'R'},
                                          {"size", required_argument, NULL, 's'},
                                          {"no-torch", no_argument, NULL, 'n'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "t:r:R:s:nh", options, NULL)) != -1) {
    switch (opt) {
    case 't': threads = atoi(optarg); break;
    case 'r': reps = atoi(optarg); break;
    case 'R': rounds = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'n': use_torch = 0; break;
    default:
      printf("Usage: bench_backbone [--threads T] [--reps R] [--rounds N] [--size S] "
             "[--no-torch]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || reps < 1 || rounds < 1 || size < 32) return 2;
  cli_choose_blas_kernels(argv, 1);
  grad_threads_set(threads);

  const char *archs[2] = {"resnet18", "wide_resnet50_2"};
  run runs[] = {{"resnet18", 1, 1e30, -1}, {"resnet18", 8, 1e30, -1},
                {"wide_resnet50_2", 1, 1e30, -1}, {"wide_resnet50_2", 8, 1e30, -1}};
  const int count = (int)(sizeof runs / sizeof runs[0]);
  const int max_batch = 8;
  const size_t image = (size_t)3 * size * size;
  float *input = malloc(sizeof(float) * image * max_batch);
  if (!input) return 1;
  grad__rng rng;
  grad__rng_seed(&rng, 1);
  grad__rng_fill_normal(&rng, input, image * max_batch, 0.0, 1.0);
  char input_path[] = "/tmp/bench_backbone_XXXXXX";
  int fd = mkstemp(input_path);
  if (fd < 0 || write(fd, input, sizeof(float) * image * max_batch) !=
                    (ssize_t)(sizeof(float) * image * max_batch)) {
    fprintf(stderr, "cannot write the input to %s\n", input_path);
    return 1;
  }
  close(fd);

  grad_backbone *bbs[2] = {NULL, NULL};
  grad_workspace *ws = NULL;
  double flops[2];
  float *out = NULL;
  size_t most = 0;
  for (int a = 0; a < 2; a++) {
    grad_backbone_options o;
    grad_backbone_options_init(&o, sizeof o);
    o.arch = archs[a];
    o.input_size = size;
    if (grad_backbone_create(&o, &bbs[a]) != GRAD_OK) {
      fprintf(stderr, "bench_backbone: %s\n", grad_last_error());
      return 1;
    }
    flops[a] = 2.0 * backbone_macs(bbs[a]);
    size_t feat = (size_t)grad_backbone_feature_channels(bbs[a]) *
                  grad_backbone_feature_height(bbs[a]) * grad_backbone_feature_width(bbs[a]);
    if (feat > most) most = feat;
  }
  out = malloc(sizeof(float) * most * max_batch);
  if (!out || grad_workspace_create(&ws) != GRAD_OK) return 1;

  signal(SIGPIPE, SIG_IGN);
  torch_side torch = {0, NULL, NULL};
  int have_torch = use_torch && torch_start(&torch, threads, size, input_path);
  double load = load_average(), peak = 0.0;
  for (int round = 0; round < rounds; round++) {
    double p = sgemm_peak(2048);
    if (p > peak) peak = p;
    for (int i = 0; i < count; i++) {
      grad_backbone *bb = bbs[strcmp(runs[i].arch, archs[0]) ? 1 : 0];
      for (int r = 0; r <= reps; r++) { /* the first call sizes the workspace */
        double t = now();
        if (grad_backbone_features(bb, ws, input, runs[i].batch, out) != GRAD_OK) {
          fprintf(stderr, "bench_backbone: %s\n", grad_last_error());
          return 1;
        }
        t = (now() - t) * 1e3 / runs[i].batch;
        if (r > 0 && t < runs[i].ours_ms) runs[i].ours_ms = t;
      }
      if (have_torch) {
        double ms = torch_time(&torch, &runs[i], reps);
        if (ms > 0 && (runs[i].torch_ms < 0 || ms < runs[i].torch_ms)) runs[i].torch_ms = ms;
      }
    }
  }
  torch_stop(&torch);
  unlink(input_path);

  printf("backbone benchmark: %dx%d input, stages up to layer3 (features layer2+layer3), "
         "%d threads, best of %d rounds x %d runs\nOpenBLAS %s kernels; sgemm peak %.1f "
         "GFLOP/s (2048^3, best round); load average %.2f at start, %.2f at the end\n\n",
         size, size, threads, rounds, reps, openblas_get_corename(), peak * 1e-9, load,
         load_average());
  printf("%-16s %5s %9s %12s %12s %10s %8s %6s\n", "arch", "batch", "GFLOP/im", "ours ms/im",
         "torch ms/im", "torch/ours", "GFLOP/s", "%peak");
  for (int i = 0; i < count; i++) {
    double f = flops[strcmp(runs[i].arch, archs[0]) ? 1 : 0];
    double gflops = f / (runs[i].ours_ms * 1e-3) * 1e-9;
    char torch_ms[32] = "-", ratio[32] = "-";
    if (have_torch && runs[i].torch_ms > 0) {
      snprintf(torch_ms, sizeof torch_ms, "%.1f", runs[i].torch_ms);
      snprintf(ratio, sizeof ratio, "%.2f", runs[i].torch_ms / runs[i].ours_ms);
    }
    printf("%-16s %5d %9.2f %12.1f %12s %10s %8.1f %5.0f%%\n", runs[i].arch, runs[i].batch,
           f * 1e-9, runs[i].ours_ms, torch_ms, ratio, gflops, 100.0 * gflops * 1e9 / peak);
  }
  printf("\n(other processes share these cores: rerun when the load average is low)\n");
  free(out);
  free(input);
  grad_workspace_free(ws);
  grad_backbone_free(bbs[0]);
  grad_backbone_free(bbs[1]);
  return 0;
}
