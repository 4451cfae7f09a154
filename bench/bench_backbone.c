/*
 * bench_backbone: libgrad's backbone against PyTorch's on the same input and
 * thread count, in one run. For resnet18 and wide_resnet50_2 up to layer3
 * (the usual layer2 + layer3 features) at 224 x 224, batch 1 and 8, prints
 * ms/image for both, their ratio, the convolutions' GFLOP/s (2 x multiply-
 * adds of every conv, over the whole forward time) and that as a fraction
 * of this machine's sgemm peak, measured first with a large square sgemm.
 * The PyTorch column comes from bench_backbone_torch.py (next to this file,
 * run with /usr/bin/python3 or $GRAD_BENCH_PYTHON) and is skipped when it or
 * torch is absent.
 *
 * Usage: bench_backbone [--threads T] [--reps R] [--size S] [--no-torch]
 *
 * OpenBLAS 0.3.21 does not know recent Xeons and falls back to its generic
 * Prescott (SSE3) kernels, about 8x slower than the AVX-512 ones. When that
 * happens and OPENBLAS_CORETYPE is not set, the benchmark sets it (SkylakeX
 * with AVX-512, Haswell with AVX2) and runs itself again; it prints the
 * kernels used either way.
 */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backbone.h"
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
  double torch_ms;  /* per image; < 0 when not measured */
} run;

/* Fills runs[].torch_ms from the PyTorch script; false when it did not run. */
static int torch_times(run *runs, int count, int threads, int reps, int size,
                       const char *input_path) {
  const char *python = getenv("GRAD_BENCH_PYTHON");
  if (!python) python = "/usr/bin/python3";
  char script[1024], cmd[4096];
  snprintf(script, sizeof script, "%s/bench_backbone_torch.py", BENCH_SOURCE_DIR);
  if (access(python, X_OK) != 0 || access(script, R_OK) != 0) {
    fprintf(stderr, "PyTorch column skipped: %s or %s not found\n", python, script);
    return 0;
  }
  int len = snprintf(cmd, sizeof cmd,
                     "%s %s --threads %d --reps %d --size %d --last-stage 3 --input %s", python,
                     script, threads, reps, size, input_path);
  for (int i = 0; i < count; i++)
    len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s:%d", runs[i].arch, runs[i].batch);
  FILE *p = popen(cmd, "r");
  if (!p) return 0;
  char arch[64];
  int batch;
  double ms;
  while (fscanf(p, "%63s %d %lf", arch, &batch, &ms) == 3)
    for (int i = 0; i < count; i++)
      if (!strcmp(runs[i].arch, arch) && runs[i].batch == batch) runs[i].torch_ms = ms;
  int status = pclose(p);
  if (status != 0) fprintf(stderr, "PyTorch column skipped: the script exited with %d\n", status);
  return status == 0;
}

int main(int argc, char **argv) {
  int threads = 2, reps = 5, size = 224, use_torch = 1;
  static const struct option options[] = {{"threads", required_argument, NULL, 't'},
                                          {"reps", required_argument, NULL, 'r'},
                                          {"size", required_argument, NULL, 's'},
                                          {"no-torch", no_argument, NULL, 'n'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "t:r:s:nh", options, NULL)) != -1) {
    switch (opt) {
    case 't': threads = atoi(optarg); break;
    case 'r': reps = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'n': use_torch = 0; break;
    default:
      printf("Usage: bench_backbone [--threads T] [--reps R] [--size S] [--no-torch]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || reps < 1 || size < 32) return 2;
  cli_choose_blas_kernels(argv, 1);
  grad_set_threads(threads);

  run runs[] = {{"resnet18", 1, -1}, {"resnet18", 8, -1},
                {"wide_resnet50_2", 1, -1}, {"wide_resnet50_2", 8, -1}};
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

  double load = load_average();
  double peak = sgemm_peak(2048);
  printf("backbone benchmark: %dx%d input, stages up to layer3 (features layer2+layer3), "
         "%d threads\nOpenBLAS %s kernels; sgemm peak %.1f GFLOP/s (2048^3); load average %.2f "
         "at start\n\n",
         size, size, threads, openblas_get_corename(), peak * 1e-9, load);
  printf("%-16s %5s %9s %12s %12s %10s %8s %6s\n", "arch", "batch", "GFLOP/im", "ours ms/im",
         "torch ms/im", "torch/ours", "GFLOP/s", "%peak");
  fflush(stdout);

  double ours_ms[4];
  double flops[4];
  for (int i = 0; i < count; i++) {
    grad_backbone_options o;
    grad_backbone_options_init(&o);
    o.arch = runs[i].arch;
    o.input_size = size;
    grad_backbone *bb = NULL;
    grad_workspace *ws = NULL;
    float *out = NULL;
    if (grad_backbone_create(&o, &bb) != GRAD_OK || grad_workspace_create(&ws) != GRAD_OK) {
      fprintf(stderr, "bench_backbone: %s\n", grad_last_error());
      return 1;
    }
    size_t feat = (size_t)grad_backbone_feature_channels(bb) * grad_backbone_feature_height(bb) *
                  grad_backbone_feature_width(bb);
    out = malloc(sizeof(float) * feat * runs[i].batch);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* the first call sizes the workspace */
      double t = now();
      if (grad_backbone_features(bb, ws, input, runs[i].batch, out) != GRAD_OK) {
        fprintf(stderr, "bench_backbone: %s\n", grad_last_error());
        return 1;
      }
      t = now() - t;
      if (r > 0 && t < best) best = t;
    }
    ours_ms[i] = best * 1e3 / runs[i].batch;
    flops[i] = 2.0 * backbone_macs(bb);
    free(out);
    grad_workspace_free(ws);
    grad_backbone_free(bb);
  }
  int have_torch = use_torch && torch_times(runs, count, threads, reps, size, input_path);
  unlink(input_path);
  for (int i = 0; i < count; i++) {
    double gflops = flops[i] / (ours_ms[i] * 1e-3) * 1e-9;
    char torch_ms[32] = "-", ratio[32] = "-";
    if (have_torch && runs[i].torch_ms > 0) {
      snprintf(torch_ms, sizeof torch_ms, "%.1f", runs[i].torch_ms);
      snprintf(ratio, sizeof ratio, "%.2f", runs[i].torch_ms / ours_ms[i]);
    }
    printf("%-16s %5d %9.2f %12.1f %12s %10s %8.1f %5.0f%%\n", runs[i].arch, runs[i].batch,
           flops[i] * 1e-9, ours_ms[i], torch_ms, ratio, gflops, 100.0 * gflops * 1e9 / peak);
  }
  printf("\nload average %.2f at the end (other processes share the cores: rerun when it is low)\n",
         load_average());
  free(input);
  return 0;
}
