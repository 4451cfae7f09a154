/*
 * bench_efficientnet: libgrad's EfficientNet-b4 against PyTorch's
 * (torchvision efficientnet_b4, features[0..5]) in one run: the network up
 * to layer 4 (stride 16, the last stage the paper's layers 3 + 4 need) at
 * 224 x 224, batch 1 and 8, ms/image on both sides and their ratio. Ours is
 * grad_backbone_features (layers 3 + 4, resized and concatenated: a little
 * more work than PyTorch's stage outputs). Random weights on both sides.
 * The PyTorch side is bench_efficientnet_torch.py (next to this file, run
 * with /usr/bin/python3 or $GRAD_BENCH_PYTHON), kept running beside this
 * program: each round times both batch sizes here and then there, and the
 * best of all rounds counts on both sides, so drifts in the machine's speed
 * (shared cores) hit both alike. Also printed: the instruction-set build
 * of libgrad's own kernels (the fused depthwise convolution).
 * Public headers only, linked to the shared library like a user's program.
 *
 * Usage: bench_efficientnet [--threads T] [--reps R] [--rounds N] [--size S]
 *                           [--arch NAME] [--no-torch]
 */
#define GRAD_EXPERIMENTAL /* grad_blas_core, grad_kernels_isa (not yet promised) */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grad/grad.h>

#include "bench_common.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

/* The PyTorch side (bench_efficientnet_torch.py); 0 when it cannot start. */
static int torch_start(bench_side *t, int threads, int size, const char *input_path) {
  const char *python = getenv("GRAD_BENCH_PYTHON");
  char script[1024], thr[16], sz[16];
  snprintf(script, sizeof script, "%s/bench_efficientnet_torch.py", BENCH_SOURCE_DIR);
  if (access(script, R_OK) != 0) {
    fprintf(stderr, "PyTorch column skipped: %s not found\n", script);
    return 0;
  }
  snprintf(thr, sizeof thr, "%d", threads);
  snprintf(sz, sizeof sz, "%d", size);
  char *argv[] = {(char *)(python ? python : "/usr/bin/python3"), script, "--threads", thr,
                  "--size", sz, "--input", (char *)input_path, NULL};
  return bench_side_start(t, argv, "PyTorch column");
}

int main(int argc, char **argv) {
  int threads = 2, reps = 5, rounds = 3, size = 224, use_torch = 1;
  const char *arch = "efficientnet_b4";
  static const struct option options[] = {{"threads", required_argument, NULL, 't'},
                                          {"reps", required_argument, NULL, 'r'},
                                          {"rounds", required_argument, NULL, 'R'},
                                          {"size", required_argument, NULL, 's'},
                                          {"arch", required_argument, NULL, 'a'},
                                          {"no-torch", no_argument, NULL, 'n'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "t:r:R:s:a:nh", options, NULL)) != -1) {
    switch (opt) {
    case 't': threads = atoi(optarg); break;
    case 'r': reps = atoi(optarg); break;
    case 'R': rounds = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'a': arch = optarg; break;
    case 'n': use_torch = 0; break;
    default:
      printf("Usage: bench_efficientnet [--threads T] [--reps R] [--rounds N] [--size S] "
             "[--arch NAME] [--no-torch]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || reps < 1 || rounds < 1 || size < 32) return 2;
  bench_check_blas_core(grad_blas_core());
  grad_threads_set(threads);

  enum { MAX_BATCH = 8 };
  const int batches[2] = {1, MAX_BATCH};
  const size_t image = (size_t)3 * size * size;
  float *input = malloc(sizeof(float) * image * MAX_BATCH);
  if (!input) return 1;
  bench_fill_normal(input, image * MAX_BATCH, 1, 1.0);
  char input_path[] = "/tmp/bench_efficientnet_XXXXXX";
  int fd = mkstemp(input_path);
  if (fd < 0 || write(fd, input, sizeof(float) * image * MAX_BATCH) !=
                    (ssize_t)(sizeof(float) * image * MAX_BATCH)) {
    fprintf(stderr, "cannot write the input to %s\n", input_path);
    return 1;
  }
  close(fd);

  grad_backbone_options o;
  grad_backbone_options_init(&o, sizeof o);
  o.arch = arch;
  o.input_size = size;
  o.layers = GRAD_BACKBONE_LAYER(3) | GRAD_BACKBONE_LAYER(4);
  grad_backbone *bb = NULL;
  grad_workspace *ws = NULL;
  if (grad_backbone_create(&o, &bb) != GRAD_OK) {
    fprintf(stderr, "bench_efficientnet: %s\n", grad_last_error());
    return 1;
  }
  size_t feat = (size_t)grad_backbone_feature_channels(bb) * grad_backbone_feature_height(bb) *
                grad_backbone_feature_width(bb);
  float *out = malloc(sizeof(float) * feat * MAX_BATCH);
  if (!out || grad_workspace_create(&ws) != GRAD_OK) return 1;

  signal(SIGPIPE, SIG_IGN);
  bench_side torch = {0, NULL, NULL};
  int have_torch = use_torch && torch_start(&torch, threads, size, input_path);
  double ours[2] = {1e30, 1e30}, theirs[2] = {-1, -1};
  double load = bench_load_average();
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < 2; i++) {
      for (int r = 0; r <= reps; r++) { /* the first call sizes the workspace */
        double t = bench_now();
        if (grad_backbone_features(bb, ws, input, batches[i], out) != GRAD_OK) {
          fprintf(stderr, "bench_efficientnet: %s\n", grad_last_error());
          return 1;
        }
        t = (bench_now() - t) * 1e3 / batches[i];
        if (r > 0 && t < ours[i]) ours[i] = t;
      }
      if (have_torch) {
        char request[64];
        snprintf(request, sizeof request, "%d %d", batches[i], reps);
        double ms = bench_side_ask(&torch, request);
        if (ms > 0 && (theirs[i] < 0 || ms < theirs[i])) theirs[i] = ms;
      }
    }
  }
  bench_side_stop(&torch);
  unlink(input_path);

  printf("EfficientNet benchmark: %s to layer 4 (stride 16; features layer3+layer4), %dx%d "
         "input, %d threads, best of %d rounds x %d runs\nOpenBLAS %s kernels; depthwise "
         "kernel: %s build; load average %.2f at start, %.2f at the end\n\n",
         arch, size, size, threads, rounds, reps, grad_blas_core(), grad_kernels_isa(), load,
         bench_load_average());
  printf("%5s %12s %12s %10s\n", "batch", "ours ms/im", "torch ms/im", "torch/ours");
  for (int i = 0; i < 2; i++) {
    if (theirs[i] > 0)
      printf("%5d %12.2f %12.2f %9.2fx\n", batches[i], ours[i], theirs[i], theirs[i] / ours[i]);
    else
      printf("%5d %12.2f %12s %10s\n", batches[i], ours[i], "-", "-");
  }
  grad_workspace_free(ws);
  grad_backbone_free(bb);
  free(out), free(input);
  return 0;
}
