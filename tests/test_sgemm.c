/*
 * The products' engines (grad_sgemm on grad__sgemm, the one door of libgrad's
 * products): the same products through OpenBLAS and through oneDNN's sgemm
 * on the pool, each against a double-precision reference, on sizes small
 * enough to check by hand and odd shapes (1, 7, 129, transposes, padded
 * leading dimensions); and the rule that picks the engine from OpenBLAS's
 * kernel set and the CPU's instruction set.
 */
#define GRAD_EXPERIMENTAL /* grad_sgemm, grad_gemm_engine_set, grad_gemm_engine_name */
#include <float.h>
#include <grad/grad.h>

#include "threading.h"
#include "testutil.h"

#ifdef GRAD_HAVE_ONEDNN
static const grad_gemm_engine engines[] = {GRAD_GEMM_OPENBLAS, GRAD_GEMM_ONEDNN};
#else
static const grad_gemm_engine engines[] = {GRAD_GEMM_OPENBLAS};
#endif
enum { ENGINES = sizeof engines / sizeof engines[0] };

/* Deterministic values in [-1, 1). */
static void fill(float *v, size_t count, unsigned seed) {
  unsigned x = seed * 2654435761u + 1;
  for (size_t i = 0; i < count; i++) {
    x = x * 1664525u + 1013904223u;
    v[i] = (float)((x >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
}

typedef struct product {
  bool ta, tb;
  int m, n, k;
} product;

/* One product through `engine` on `threads` threads, checked element by
 * element against the sum in double, with C's padding left as it was. */
static void check_product(grad_gemm_engine engine, product p, int threads, float *out) {
  const int lda = (p.ta ? p.m : p.k) + 3, ldb = (p.tb ? p.k : p.n) + 5, ldc = p.n + 2;
  const int arows = p.ta ? p.k : p.m, brows = p.tb ? p.n : p.k;
  float *a = malloc(sizeof(float) * arows * lda), *b = malloc(sizeof(float) * brows * ldb);
  float *c = malloc(sizeof(float) * p.m * ldc), *c0 = malloc(sizeof(float) * p.m * ldc);
  fill(a, (size_t)arows * lda, 1);
  fill(b, (size_t)brows * ldb, 2);
  fill(c0, (size_t)p.m * ldc, 3);
  memcpy(c, c0, sizeof(float) * p.m * ldc);
  const float alpha = 0.75f, beta = -1.5f;
  ck_assert_int_eq(grad_gemm_engine_set(engine), GRAD_OK);
  ck_assert_int_eq(
      grad_sgemm(p.ta, p.tb, p.m, p.n, p.k, alpha, a, lda, b, ldb, beta, c, ldc, threads), GRAD_OK);
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_AUTO), GRAD_OK);
  for (int i = 0; i < p.m; i++) {
    for (int j = 0; j < p.n; j++) {
      double sum = 0.0, size = 0.0;
      for (int l = 0; l < p.k; l++) {
        double x = p.ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l];
        double y = p.tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j];
        sum += x * y;
        size += fabs(x * y);
      }
      double ref = alpha * sum + beta * c0[(size_t)i * ldc + j];
      size = alpha * size + fabs(beta * c0[(size_t)i * ldc + j]);
      double got = c[(size_t)i * ldc + j];
      /* fp32 sums of k terms: well within k * eps of the terms' size. */
      if (!(fabs(got - ref) <= (p.k + 2) * FLT_EPSILON * size))
        ck_abort_msg("engine %d, %c%c m %d n %d k %d, %d threads: C[%d][%d] = %.9g, reference %.9g",
                     (int)engine, p.ta ? 'T' : 'N', p.tb ? 'T' : 'N', p.m, p.n, p.k, threads, i, j,
                     got, ref);
      if (out) out[(size_t)i * p.n + j] = (float)got;
    }
    for (int j = p.n; j < ldc; j++)
      ck_assert_msg(c[(size_t)i * ldc + j] == c0[(size_t)i * ldc + j], "padding of C written");
  }
  free(a);
  free(b);
  free(c);
  free(c0);
}

START_TEST(both_engines_match_the_double_reference) {
  static const int sizes[] = {1, 7, 129};
  for (int d = 0; d < ENGINES; d++)
    for (int t = 0; t < 4; t++)
      for (int mi = 0; mi < 3; mi++)
        for (int ni = 0; ni < 3; ni++)
          for (int ki = 0; ki < 3; ki++) {
            product p = {t & 1, t >> 1, sizes[mi], sizes[ni], sizes[ki]};
            check_product(engines[d], p, 2, NULL);
          }
}
END_TEST

/* Shapes large enough to be split over two threads, by columns (the
 * decoder's, PCA's) and by rows (few columns: EfficientNet's last stages). */
static const product split_products[] = {
    {false, false, 64, 300, 384},
    {false, true, 129, 200, 129},
    {true, false, 300, 7, 1100},
    {true, true, 260, 33, 300},
};
enum { SPLITS = sizeof split_products / sizeof split_products[0] };

/* The same bits twice; with oneDNN on 1 thread as on 2 too (docs/guide.md,
 * "Threads"), which OpenBLAS does not promise (it differs here on the third
 * product); 3 threads may differ. */
START_TEST(split_products_repeat_bit_for_bit) {
  for (int d = 0; d < ENGINES; d++)
    for (int i = 0; i < SPLITS; i++) {
      const product p = split_products[i];
      const size_t bytes = sizeof(float) * p.m * p.n;
      float *first = malloc(bytes), *again = malloc(bytes), *one = malloc(bytes);
      for (int threads = 1; threads <= 3; threads++) {
        grad_threads_set(threads); /* OpenBLAS's count */
        check_product(engines[d], p, threads, first);
        check_product(engines[d], p, threads, again);
        ck_assert_msg(memcmp(first, again, bytes) == 0,
                      "engine %d, product %d on %d threads: not the same bits twice",
                      (int)engines[d], i, threads);
        if (threads == 1) memcpy(one, first, bytes);
        if (threads == 2 && engines[d] == GRAD_GEMM_ONEDNN)
          ck_assert_msg(memcmp(one, first, bytes) == 0,
                        "oneDNN, product %d: 1 and 2 threads give different bits", i);
      }
      grad_threads_set(2);
      free(first);
      free(again);
      free(one);
    }
}
END_TEST

START_TEST(auto_engine_is_onednn_where_built_in) {
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_AUTO), GRAD_OK);
#ifdef GRAD_HAVE_ONEDNN
  ck_assert_int_eq(grad__gemm_engine_used(), GRAD_GEMM_ONEDNN);
  ck_assert_str_eq(grad_gemm_engine_name(), "oneDNN sgemm");
#else
  ck_assert_int_eq(grad__gemm_engine_used(), GRAD_GEMM_OPENBLAS);
#endif
}
END_TEST

START_TEST(engine_name_says_which) {
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_OPENBLAS), GRAD_OK);
  ck_assert_int_eq(strncmp(grad_gemm_engine_name(), "OpenBLAS ", 9), 0);
  ck_assert_str_eq(grad_gemm_engine_name() + 9, grad_blas_core());
#ifdef GRAD_HAVE_ONEDNN
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_ONEDNN), GRAD_OK);
  ck_assert_int_eq(strncmp(grad_gemm_engine_name(), "oneDNN sgemm", 12), 0);
#else
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_ONEDNN), GRAD_E_UNSUPPORTED);
  ck_assert_int_eq(strncmp(grad_gemm_engine_name(), "OpenBLAS ", 9), 0); /* unchanged */
#endif
  ck_assert_int_eq(grad_gemm_engine_set((grad_gemm_engine)7), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_AUTO), GRAD_OK);
  const bool onednn = grad__gemm_engine_used() == GRAD_GEMM_ONEDNN;
  ck_assert_int_eq(strncmp(grad_gemm_engine_name(), onednn ? "oneDNN" : "OpenBLAS", onednn ? 6 : 8),
                   0);
}
END_TEST

/* k = 0 leaves beta * C; bad arguments fail with a message and touch nothing. */
START_TEST(empty_and_bad_products) {
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1}, c[4] = {1, 2, 3, 4};
  for (int d = 0; d < ENGINES; d++) {
    ck_assert_int_eq(grad_gemm_engine_set(engines[d]), GRAD_OK);
    float k0[4] = {1, 2, 3, 4};
    ck_assert_int_eq(grad_sgemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 2.0f, k0, 2, 1), GRAD_OK);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(k0[i], 2.0f * (float)(i + 1));
  }
  ck_assert_int_eq(grad_gemm_engine_set(GRAD_GEMM_AUTO), GRAD_OK);
  ck_assert_int_eq(grad_sgemm(0, 0, -1, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2, 1), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "m -1"));
  ck_assert_int_eq(grad_sgemm(0, 0, 2, 2, 2, 1.0f, NULL, 2, b, 2, 0.0f, c, 2, 1),
                   GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "matrix A is NULL"));
  ck_assert_int_eq(grad_sgemm(1, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 1, 1), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "ldc 1 for 2"));
  ck_assert_int_eq(grad_sgemm(0, 1, 2, 2, 2, 1.0f, a, 2, b, 1, 0.0f, c, 2, 1), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "ldb 1 for 2"));
  for (int i = 0; i < 4; i++) ck_assert_float_eq(c[i], (float)(i + 1));
}
END_TEST

int main(void) {
  Suite *s = suite_create("sgemm");
  TCase *tc = tcase_create("sgemm");
  tcase_add_test(tc, both_engines_match_the_double_reference);
  tcase_add_test(tc, split_products_repeat_bit_for_bit);
  tcase_add_test(tc, auto_engine_is_onednn_where_built_in);
  tcase_add_test(tc, engine_name_says_which);
  tcase_add_test(tc, empty_and_bad_products);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
