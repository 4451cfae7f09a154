/*
 * bench_backbone: libgrad's backbone against PyTorch's and ONNX Runtime's
 * on the same input and thread count, in one run, one table. For resnet18
 * and wide_resnet50_2 up to layer3 (the usual layer2 + layer3 features) at
 * 224 x 224, batch 1 and 8, it prints ms/image for:
 *   ours: the oneDNN engine in fp32 and bf16 (where the CPU has native
 *     bf16), the im2col engine in fp32, and the oneDNN fp32 engine on one
 *     thread (for the scaling column: t(1) / (T * t(T)), 1.00 = linear);
 *   PyTorch (bench_backbone_torch.py, /usr/bin/python3 or
 *     $GRAD_BENCH_PYTHON): NCHW, channels_last, and channels_last under
 *     bf16 autocast;
 *   ONNX Runtime fp32 (bench_backbone_ort.js under node, with
 *     onnxruntime-node from $GRAD_BENCH_ORT/node_modules, default
 *     /work/ort; the models exported by the PyTorch script);
 * and the oneDNN fp32 (bf16) engine's GFLOP/s as a fraction of the CPU's
 * measured fp32 FMA (AVX512_BF16 dot-product) peak. The FLOP counted are a
 * direct convolution's, 2 x multiply-adds: Winograd (3x3: oneDNN's in fp32,
 * libgrad's in bf16) does fewer multiplications, so its fraction can pass
 * 100% ("effective" GFLOP/s). The external sides run beside this
 * program: each round times every configuration on every side back to back,
 * and the best of all rounds counts, so drifts in the machine's speed (these
 * cores are shared) hit all alike. A side that is missing is skipped.
 *
 * Usage: bench_backbone [--threads T] [--reps R] [--rounds N] [--size S]
 *                       [--no-torch] [--no-ort]
 */
#include <getopt.h>
#include <immintrin.h>
#include <stdbool.h>
#include <pthread.h>
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

/* ---- The CPU's peaks: independent chains of FMAs (fp32) or of bf16 dot
 * products (AVX512_BF16) on every thread, written with intrinsics so that
 * each step is one instruction (plain C `a * m + c` is not contracted into
 * an FMA under -std=c11, which read about 20% low). ---- */
enum { PEAK_ITERS = 1 << 24, PEAK_CHAINS = 12 };
enum peak_kind { PEAK_FP32, PEAK_BF16 };

__attribute__((target("avx512f"))) static float fma_loop_512(float seed) {
  __m512 acc[PEAK_CHAINS];
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f * seed);
  for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12 /* the chains in registers, not in memory */
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
  float s = 0;
  for (int c = 0; c < PEAK_CHAINS; c++) s += _mm512_reduce_add_ps(acc[c]);
  return s;
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(float seed) {
  __m256 acc[PEAK_CHAINS];
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f * seed);
  for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12 /* the chains in registers, not in memory */
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
  float s = 0;
  for (int c = 0; c < PEAK_CHAINS; c++) s += acc[c][0];
  return s;
}

/* One vdpbf16ps: 16 lanes x 2 products x (multiply + add) = 64 FLOP. */
__attribute__((target("avx512f,avx512bf16"))) static float bf16_loop_512(float seed) {
  __m512 acc[PEAK_CHAINS];
  const __m512bh m = (__m512bh)_mm512_set1_epi16(0x3f80); /* 1.0 in bf16 */
  for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm512_set1_ps(seed + (float)c);
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12 /* the chains in registers, not in memory */
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm512_dpbf16_ps(acc[c], m, m);
  float s = 0;
  for (int c = 0; c < PEAK_CHAINS; c++) s += _mm512_reduce_add_ps(acc[c]);
  return s;
}

/* FLOP of one step of one chain; 0 where the CPU lacks the instructions. */
static double step_flop(enum peak_kind kind) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (kind == PEAK_BF16) return avx512 && __builtin_cpu_supports("avx512bf16") ? 64.0 : 0.0;
  if (avx512) return 32.0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 16.0 : 0.0;
}

typedef struct peak_job {
  enum peak_kind kind;
  float seed;
} peak_job;

static void *peak_thread(void *arg) {
  peak_job *j = arg;
  if (j->kind == PEAK_BF16)
    j->seed = bf16_loop_512(j->seed);
  else
    j->seed = step_flop(PEAK_FP32) == 32.0 ? fma_loop_512(j->seed) : fma_loop_256(j->seed);
  return NULL;
}

/* FLOP/s of `threads` threads running chains at once (0 without the
 * instructions). */
static double peak_flops(enum peak_kind kind, int threads) {
  const double flop = step_flop(kind);
  if (flop == 0.0) return 0.0;
  pthread_t t[64];
  peak_job jobs[64];
  if (threads > 64) threads = 64;
  double start = bench_now();
  for (int i = 0; i < threads; i++) {
    jobs[i] = (peak_job){kind, (float)(i + 1)};
    pthread_create(&t[i], NULL, peak_thread, &jobs[i]);
  }
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double sec = bench_now() - start;
  return flop * PEAK_CHAINS * (double)PEAK_ITERS * threads / sec;
}

/* One configuration of the table and its best times (ms per image; < 0:
 * not measured). */
enum { OURS_FP32, OURS_BF16, OURS_IM2COL, OURS_ONE_THREAD, TORCH_NCHW, TORCH_CL, TORCH_BF16,
       ORT_FP32, COLUMNS };
static const char *const column_names[COLUMNS] = {
    "ours fp32", "ours bf16", "im2col", "ours 1thr", "pt nchw", "pt cl", "pt bf16", "ort fp32"};

typedef struct run {
  int arch;  /* index into archs */
  int batch;
  double ms[COLUMNS];
} run;

static void keep_best(double *best, double ms) {
  if (ms > 0 && (*best < 0 || ms < *best)) *best = ms;
}

/* Best ms/image of reps calls after one that sizes the workspace; < 0 on failure. */
static double time_ours(grad_backbone *bb, grad_workspace *ws, const float *input, int batch,
                        int reps, float *out) {
  double best = -1.0;
  for (int r = 0; r <= reps; r++) {
    double t = bench_now();
    if (grad_backbone_features(bb, ws, input, batch, out) != GRAD_OK) {
      fprintf(stderr, "bench_backbone: %s\n", grad_last_error());
      return -1.0;
    }
    t = (bench_now() - t) * 1e3 / batch;
    if (r > 0) keep_best(&best, t);
  }
  return best;
}

static void cell(char *buf, size_t size, double v, const char *fmt) {
  if (v > 0)
    snprintf(buf, size, fmt, v);
  else
    snprintf(buf, size, "-");
}

int main(int argc, char **argv) {
  int threads = 2, reps = 3, rounds = 3, size = 224, use_torch = 1, use_ort = 1;
  static const struct option options[] = {{"threads", required_argument, NULL, 't'},
                                          {"reps", required_argument, NULL, 'r'},
                                          {"rounds", required_argument, NULL, 'R'},
                                          {"size", required_argument, NULL, 's'},
                                          {"no-torch", no_argument, NULL, 'n'},
                                          {"no-ort", no_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "t:r:R:s:noh", options, NULL)) != -1) {
    switch (opt) {
    case 't': threads = atoi(optarg); break;
    case 'r': reps = atoi(optarg); break;
    case 'R': rounds = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'n': use_torch = 0; break;
    case 'o': use_ort = 0; break;
    default:
      printf("Usage: bench_backbone [--threads T] [--reps R] [--rounds N] [--size S] "
             "[--no-torch] [--no-ort]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || reps < 1 || rounds < 1 || size < 32) return 2;
  grad_threads_set(threads);

  const char *archs[2] = {"resnet18", "wide_resnet50_2"};
  run runs[] = {{0, 1, {0}}, {0, 8, {0}}, {1, 1, {0}}, {1, 8, {0}}};
  const int count = (int)(sizeof runs / sizeof runs[0]);
  for (int i = 0; i < count; i++)
    for (int c = 0; c < COLUMNS; c++) runs[i].ms[c] = -1.0;
  const int max_batch = 8;
  const size_t image = (size_t)3 * size * size;
  float *input = malloc(sizeof(float) * image * max_batch);
  if (!input) return 1;
  uint64_t state = 1; /* any fixed input: uniform in [-2, 2) */
  for (size_t i = 0; i < image * max_batch; i++) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    input[i] = (float)((state >> 40) * (4.0 / 16777216.0) - 2.0);
  }
  char input_path[] = "/tmp/bench_backbone_XXXXXX";
  int fd = mkstemp(input_path);
  if (fd < 0 || write(fd, input, sizeof(float) * image * max_batch) !=
                    (ssize_t)(sizeof(float) * image * max_batch)) {
    fprintf(stderr, "cannot write the input to %s\n", input_path);
    return 1;
  }
  close(fd);

  /* Our three engine/precision settings per architecture. */
  const int have_bf16 = grad_precision_available(GRAD_PRECISION_BF16);
  const int have_onednn = grad_engine_available(GRAD_ENGINE_ONEDNN);
  grad_backbone *bbs[2][3] = {{NULL}};
  grad_workspace *ws = NULL, *ws_one = NULL;
  double flops[2];
  float *out = NULL;
  size_t most = 0;
  for (int a = 0; a < 2; a++) {
    grad_backbone_options o;
    grad_backbone_options_init(&o, sizeof o);
    o.arch = archs[a];
    o.input_size = size;
    for (int m = 0; m < 3; m++) {
      if ((m == OURS_FP32 && !have_onednn) || (m == OURS_BF16 && !have_bf16)) continue;
      grad_engine e = m == OURS_IM2COL ? GRAD_ENGINE_IM2COL : GRAD_ENGINE_ONEDNN;
      grad_precision p = m == OURS_BF16 ? GRAD_PRECISION_BF16 : GRAD_PRECISION_FP32;
      if (grad_backbone_create(&o, &bbs[a][m]) != GRAD_OK ||
          grad_backbone_compute_set(bbs[a][m], e, p) != GRAD_OK) {
        fprintf(stderr, "bench_backbone: %s\n", grad_last_error());
        return 1;
      }
    }
    flops[a] = 2.0 * grad_backbone_macs(bbs[a][OURS_IM2COL]);
    size_t feat = (size_t)grad_backbone_feature_channels(bbs[a][OURS_IM2COL]) *
                  grad_backbone_feature_height(bbs[a][OURS_IM2COL]) *
                  grad_backbone_feature_width(bbs[a][OURS_IM2COL]);
    if (feat > most) most = feat;
  }
  out = malloc(sizeof(float) * most * max_batch);
  if (!out || grad_workspace_create(&ws) != GRAD_OK || grad_workspace_create(&ws_one) != GRAD_OK)
    return 1;
  grad_workspace_threads_set(ws_one, 1);

  /* The peaks first, before the other sides' threads exist (their pools
   * spin for a while after each request and would take the cores). */
  double load = bench_load_average(), peak = 0.0, peak_bf16 = 0.0;
  for (int round = 0; round < 3; round++) {
    double p = peak_flops(PEAK_FP32, threads), pb = peak_flops(PEAK_BF16, threads);
    if (p > peak) peak = p;
    if (pb > peak_bf16) peak_bf16 = pb;
  }

  signal(SIGPIPE, SIG_IGN);
  char thr[16], sz[16];
  snprintf(thr, sizeof thr, "%d", threads);
  snprintf(sz, sizeof sz, "%d", size);
  bench_side torch = {0, NULL, NULL}, ort = {0, NULL, NULL};
  int have_torch = 0, have_ort = 0;
  char onnx[2][64] = {"", ""};
  if (use_torch) {
    const char *python = getenv("GRAD_BENCH_PYTHON");
    char script[1024];
    snprintf(script, sizeof script, "%s/bench_backbone_torch.py", BENCH_SOURCE_DIR);
    char *targv[] = {(char *)(python ? python : "/usr/bin/python3"), script, "--threads", thr,
                     "--size", sz, "--last-stage", "3", "--input", input_path, NULL};
    have_torch = bench_side_start(&torch, targv, "PyTorch columns");
  }
  if (use_ort && have_torch) { /* ONNX Runtime runs the models PyTorch exports */
    const char *dir = getenv("GRAD_BENCH_ORT");
    char modules[1024], script[1024], request[256], line[64];
    snprintf(modules, sizeof modules, "%s/node_modules", dir ? dir : "/work/ort");
    snprintf(script, sizeof script, "%s/bench_backbone_ort.js", BENCH_SOURCE_DIR);
    int exported = 1;
    for (int a = 0; a < 2 && exported; a++) {
      snprintf(onnx[a], sizeof onnx[a], "%s_%s.onnx", input_path, archs[a]);
      snprintf(request, sizeof request, "export %s %s", archs[a], onnx[a]);
      fprintf(torch.to, "%s\n", request);
      fflush(torch.to);
      exported = fgets(line, sizeof line, torch.from) && strncmp(line, "ok", 2) == 0;
    }
    if (!exported) {
      fprintf(stderr, "ONNX Runtime column skipped: torch.onnx.export failed\n");
    } else {
      setenv("NODE_PATH", modules, 1);
      char *oargv[] = {"/usr/bin/node", script, "--threads", thr, "--size", sz, "--input",
                       input_path, NULL};
      have_ort = bench_side_start(&ort, oargv, "ONNX Runtime column");
    }
  }

  const char *torch_modes[3] = {"nchw", "cl", "bf16"};
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < count; i++) {
      run *r = &runs[i];
      const int a = r->arch;
      for (int m = 0; m < 3; m++)
        if (bbs[a][m]) keep_best(&r->ms[m], time_ours(bbs[a][m], ws, input, r->batch, reps, out));
      if (threads > 1 && bbs[a][OURS_FP32])
        keep_best(&r->ms[OURS_ONE_THREAD],
                  time_ours(bbs[a][OURS_FP32], ws_one, input, r->batch, reps, out));
      char request[256];
      for (int m = 0; have_torch && m < 3; m++) {
        snprintf(request, sizeof request, "time %s %d %d %s", archs[a], r->batch, reps,
                 torch_modes[m]);
        keep_best(&r->ms[TORCH_NCHW + m], bench_side_ask(&torch, request));
      }
      if (have_ort) {
        snprintf(request, sizeof request, "%s %d %d", onnx[a], r->batch, reps);
        keep_best(&r->ms[ORT_FP32], bench_side_ask(&ort, request));
      }
    }
  }
  bench_side_stop(&ort);
  bench_side_stop(&torch);
  for (int a = 0; a < 2; a++)
    if (onnx[a][0]) unlink(onnx[a]);
  unlink(input_path);

  char cpu[128] = "unknown CPU";
  FILE *info = fopen("/proc/cpuinfo", "r");
  if (info) {
    char line[256];
    while (fgets(line, sizeof line, info))
      if (strncmp(line, "model name", 10) == 0) {
        char *v = strchr(line, ':');
        if (v) snprintf(cpu, sizeof cpu, "%s", v + 2);
        cpu[strcspn(cpu, "\n")] = 0;
        break;
      }
    fclose(info);
  }
  printf("backbone benchmark: %s, %dx%d input, stages up to layer3 (features layer2+layer3), "
         "%d threads, best of %d rounds x %d runs, ms per image\n"
         "engine %s, bf16 %s; measured peaks on %d threads: fp32 FMA %.0f GFLOP/s, bf16 "
         "dot products %.0f GFLOP/s; load average %.2f at start, %.2f at the end\n\n",
         cpu, size, size, threads, rounds, reps, grad_engine_name(GRAD_ENGINE_AUTO),
         have_bf16 ? "native" : "not native (column skipped)", threads, peak * 1e-9,
         peak_bf16 * 1e-9, load,
         bench_load_average());
  printf("%-15s %5s %6s", "arch", "batch", "GFLOP");
  for (int c = 0; c < COLUMNS; c++) printf(" %9s", column_names[c]);
  printf(" %8s %8s %8s %7s %7s %6s\n", "ort/ours", "cl/ours", "bf16/bf", "%pk f32", "%pk bf",
         "scale");
  for (int i = 0; i < count; i++) {
    const run *r = &runs[i];
    const double f = flops[r->arch];
    char buf[32];
    printf("%-15s %5d %6.2f", archs[r->arch], r->batch, f * 1e-9);
    for (int c = 0; c < COLUMNS; c++) {
      cell(buf, sizeof buf, r->ms[c], "%.1f");
      printf(" %9s", buf);
    }
    const double *ms = r->ms;
    double ratios[3] = {ms[ORT_FP32] / ms[OURS_FP32], ms[TORCH_CL] / ms[OURS_FP32],
                        ms[TORCH_BF16] / ms[OURS_BF16]};
    for (int k = 0; k < 3; k++) {
      cell(buf, sizeof buf, ratios[k], "%.2f");
      printf(" %8s", buf);
    }
    double pk32 = ms[OURS_FP32] > 0 ? 100.0 * f / (ms[OURS_FP32] * 1e-3) / peak : -1;
    double pkbf = ms[OURS_BF16] > 0 && peak_bf16 > 0
                      ? 100.0 * f / (ms[OURS_BF16] * 1e-3) / peak_bf16
                      : -1;
    double scale = ms[OURS_ONE_THREAD] > 0 ? ms[OURS_ONE_THREAD] / (threads * ms[OURS_FP32]) : -1;
    cell(buf, sizeof buf, pk32, "%.0f%%");
    printf(" %7s", buf);
    cell(buf, sizeof buf, pkbf, "%.0f%%");
    printf(" %7s", buf);
    cell(buf, sizeof buf, scale, "%.2f");
    printf(" %6s\n", buf);
  }
  printf("\nratios > 1: ours faster (ort/ours, cl/ours: fp32 engine; bf16/bf: PyTorch bf16 "
         "autocast over ours bf16); scale: t(1 thread) / (%d x t(%d threads)), 1.00 = linear\n"
         "%%pk: direct-convolution FLOP over the measured peak; Winograd (fp32 and bf16) does fewer "
         "multiplications, so it can pass 100%%\n"
         "(other processes share these cores: rerun when the load average is low)\n",
         threads, threads);
  free(out);
  free(input);
  grad_workspace_free(ws);
  grad_workspace_free(ws_one);
  for (int a = 0; a < 2; a++)
    for (int m = 0; m < 3; m++) grad_backbone_free(bbs[a][m]);
  return 0;
}
