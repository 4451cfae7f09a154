/* The bf16 Winograd F(2x2, 3x3) convolution (winograd_bf16.h) against the
 * definition of convolution: exactly on small integers (every step of the
 * algorithm is exact there, so only the final rounding to bf16 remains),
 * within bf16's rounding on random values, and the same bits whatever the
 * thread count. Skipped where the CPU has no AVX512_BF16. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "half.h"
#include "testutil.h"
#include "winograd_bf16.h"

static unsigned rng_state = 2024u;
static double uniform(void) { return test_uniform(&rng_state); }
static float small_int(int range) { return (float)(int)floor((uniform() + 1.0) * 0.5 * (2 * range + 1)) - range; }

static uint16_t bf16_of(float f) { /* round to nearest even */
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

/* Index of channel c at (y, x) in nChw16c, one image. */
static size_t blocked(int c, int y, int x, int h, int w) {
  return (((size_t)(c / 16) * h + y) * w + x) * 16 + c % 16;
}

typedef struct problem {
  grad__wino_bf16 s;
  float *x, *weight, *bias, *residual; /* x, residual: C,H,W, already bf16 values */
  double *ref;                         /* relu(conv + bias + residual), in double */
} problem;

static void problem_make(problem *p, int C, int K, int h, int w, bool integers) {
  p->s = (grad__wino_bf16){C, K, h, w};
  p->x = calloc((size_t)C * h * w, sizeof(float));
  p->residual = calloc((size_t)K * h * w, sizeof(float));
  p->weight = calloc((size_t)K * C * 9, sizeof(float));
  p->bias = calloc((size_t)K, sizeof(float));
  p->ref = calloc((size_t)K * h * w, sizeof(double));
  for (size_t i = 0; i < (size_t)C * h * w; i++)
    p->x[i] = grad__bf16_to_f32(bf16_of(integers ? small_int(4) : (float)uniform()));
  for (size_t i = 0; i < (size_t)K * h * w; i++)
    p->residual[i] = grad__bf16_to_f32(bf16_of(integers ? small_int(4) : (float)uniform()));
  for (size_t i = 0; i < (size_t)K * C * 9; i++)
    p->weight[i] = integers ? small_int(2) : (float)(uniform() / sqrt(C * 9.0));
  for (int k = 0; k < K; k++) p->bias[k] = integers ? small_int(3) : (float)(0.1 * uniform());
  for (int k = 0; k < K; k++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        double acc = p->bias[k];
        for (int c = 0; c < C; c++)
          for (int dy = 0; dy < 3; dy++)
            for (int dx = 0; dx < 3; dx++) {
              int iy = y + dy - 1, ix = x + dx - 1;
              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
              acc += (double)p->weight[((size_t)k * C + c) * 9 + dy * 3 + dx] *
                     p->x[((size_t)c * h + iy) * w + ix];
            }
        acc += p->residual[((size_t)k * h + y) * w + x];
        p->ref[((size_t)k * h + y) * w + x] = acc > 0 ? acc : 0;
      }
}

static void problem_free(problem *p) {
  free(p->x), free(p->residual), free(p->weight), free(p->bias), free(p->ref);
}

/* The kernel's output (C,H,W floats) with `threads` threads. */
static float *run(const problem *p, int threads) {
  const grad__wino_bf16 *s = &p->s;
  const int C = s->in_channels, K = s->out_channels, h = s->h, w = s->w;
  uint16_t *src = calloc((size_t)C * h * w, 2), *dst = calloc((size_t)K * h * w, 2);
  void *u = aligned_alloc(64, (grad__wino_bf16_weight_bytes(s) + 63) & ~(size_t)63);
  void *scratch = aligned_alloc(64, (grad__wino_bf16_scratch_bytes(s, threads) + 63) & ~(size_t)63);
  ck_assert(src && dst && u && scratch);
  for (int c = 0; c < C; c++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        src[blocked(c, y, x, h, w)] = bf16_of(p->x[((size_t)c * h + y) * w + x]);
  for (int k = 0; k < K; k++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        dst[blocked(k, y, x, h, w)] = bf16_of(p->residual[((size_t)k * h + y) * w + x]);
  grad__wino_bf16_weights_lay(s, p->weight, u);
  grad__wino_bf16_run(s, 1, src, u, p->bias, dst, true, true, scratch, threads);
  float *out = malloc(sizeof(float) * K * h * w);
  for (int k = 0; k < K; k++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        out[((size_t)k * h + y) * w + x] = grad__bf16_to_f32(dst[blocked(k, y, x, h, w)]);
  free(src), free(dst), free(u), free(scratch);
  return out;
}

#define SKIP_WITHOUT_BF16()                                           \
  do {                                                                \
    if (!grad__wino_bf16_available()) {                               \
      fprintf(stderr, "skipped: this CPU has no AVX512_BF16\n");      \
      return;                                                         \
    }                                                                 \
  } while (0)

START_TEST(small_integers_come_out_exact) {
  SKIP_WITHOUT_BF16();
  /* odd sizes: tiles that cross the right and bottom edges */
  const int sizes[][4] = {{32, 32, 9, 7}, {48, 64, 14, 14}, {16, 32, 5, 12}, {16, 32, 1, 1}};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    problem p;
    problem_make(&p, sizes[t][0], sizes[t][1], sizes[t][2], sizes[t][3], true);
    float *out = run(&p, 1);
    const size_t count = (size_t)p.s.out_channels * p.s.h * p.s.w;
    for (size_t i = 0; i < count; i++)
      ck_assert_msg(out[i] == grad__bf16_to_f32(bf16_of((float)p.ref[i])),
                    "shape %zu, output %zu: %g, exact %g", t, i, out[i], p.ref[i]);
    free(out);
    problem_free(&p);
  }
}
END_TEST

START_TEST(random_values_within_bf16_rounding) {
  SKIP_WITHOUT_BF16();
  problem p;
  problem_make(&p, 128, 64, 14, 14, false);
  float *out = run(&p, 2);
  const size_t count = (size_t)p.s.out_channels * p.s.h * p.s.w;
  double max_ref = 0, max_diff = 0, sq_ref = 0, sq_diff = 0;
  for (size_t i = 0; i < count; i++) {
    const double d = fabs(out[i] - p.ref[i]);
    max_ref = fmax(max_ref, fabs(p.ref[i]));
    max_diff = fmax(max_diff, d);
    sq_ref += p.ref[i] * p.ref[i];
    sq_diff += d * d;
  }
  fprintf(stderr, "max|diff| / max|ref| = %.2e, rms ratio %.2e\n", max_diff / max_ref,
          sqrt(sq_diff / sq_ref));
  /* bf16 keeps 8 bits: 2^-9 relative per rounding, a few roundings deep */
  ck_assert_double_le(max_diff / max_ref, 1e-2);
  ck_assert_double_le(sqrt(sq_diff / sq_ref), 4e-3);
  ck_assert_double_gt(max_diff, 0); /* bf16 did round: the check above is not idle */
  free(out);
  problem_free(&p);
}
END_TEST

START_TEST(same_bits_for_every_thread_count) {
  SKIP_WITHOUT_BF16();
  problem p;
  problem_make(&p, 64, 32, 28, 28, false);
  float *one = run(&p, 1);
  const size_t count = (size_t)p.s.out_channels * p.s.h * p.s.w;
  for (int threads = 2; threads <= 3; threads++) {
    float *many = run(&p, threads);
    ck_assert_int_eq(memcmp(one, many, count * sizeof(float)), 0);
    free(many);
  }
  free(one);
  problem_free(&p);
}
END_TEST

START_TEST(fits_only_its_shapes) {
  ck_assert(grad__wino_bf16_fits(&(grad__conv){64, 64, 3, 1, 1}));
  ck_assert(!grad__wino_bf16_fits(&(grad__conv){64, 64, 3, 2, 1}));  /* stride 2 */
  ck_assert(!grad__wino_bf16_fits(&(grad__conv){64, 64, 1, 1, 0}));  /* 1x1 */
  ck_assert(!grad__wino_bf16_fits(&(grad__conv){3, 64, 3, 1, 1}));   /* 3 input channels */
  ck_assert(!grad__wino_bf16_fits(&(grad__conv){64, 48, 3, 1, 1}));  /* 48 outputs */
}
END_TEST

int main(void) {
  Suite *s = suite_create("winograd_bf16");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, small_integers_come_out_exact);
  tcase_add_test(tc, random_values_within_bf16_rounding);
  tcase_add_test(tc, same_bits_for_every_thread_count);
  tcase_add_test(tc, fits_only_its_shapes);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
