/*
 * Evaluation metrics: hand-computed cases (AUROC, ties, flipped curves,
 * F1-max, AUPRO with interpolation at the limit, 8-connected regions), the
 * radix sort against qsort, and numpy brute-force references
 * (tests/make_head_golden.py) on quantised scores full of ties.
 */
#include <grad/eval.h>

#include "metrics.h"
#include "testutil.h"

static void *load_fixture(const char *name, size_t bytes) {
  char fname[256];
  snprintf(fname, sizeof fname, "head/%s", name);
  FILE *f = fopen(test_fixture(fname), "rb");
  ck_assert_msg(f != NULL, "cannot open fixture %s", fname);
  void *v = malloc(bytes + 1);
  size_t got = fread(v, 1, bytes + 1, f);
  fclose(f);
  ck_assert_msg(got == bytes, "fixture %s holds %zu bytes, expected %zu", fname, got, bytes);
  return v;
}

static double expected(const char *key) {
  char line[512];
  FILE *f = fopen(test_fixture("head/expected.txt"), "r");
  ck_assert_msg(f != NULL, "cannot open head/expected.txt");
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, key, klen) && line[klen] == ' ') {
      fclose(f);
      return atof(line + klen + 1);
    }
  }
  fclose(f);
  ck_abort_msg("key %s not in expected.txt", key);
  return 0;
}

static double auroc_of(const float *s, const uint8_t *l, size_t n) {
  double v = -1;
  ck_assert_int_eq(grad_eval_auroc(s, l, n, &v), GRAD_OK);
  return v;
}

START_TEST(auroc_by_hand) {
  const float s[4] = {0.1f, 0.4f, 0.35f, 0.8f};
  const uint8_t l[4] = {0, 0, 1, 1};
  ck_assert_double_eq_tol(auroc_of(s, l, 4), 0.75, 1e-15);
  /* Ties across the labels count one half: pairs 0.5, 1, 1, 1 -> 3.5 / 4. */
  const float t[4] = {0.5f, 0.5f, 0.2f, 0.9f};
  const uint8_t tl[4] = {1, 0, 0, 1};
  ck_assert_double_eq_tol(auroc_of(t, tl, 4), 0.875, 1e-15);
  const float same[5] = {2, 2, 2, 2, 2};
  const uint8_t sl[5] = {1, 0, 1, 0, 0};
  ck_assert_double_eq_tol(auroc_of(same, sl, 5), 0.5, 1e-15);
  /* Perfect and inverted separations: 1 and 0 (never flipped to 1). */
  const float p[4] = {-3, -1, 0.0f, 7};
  const uint8_t pl[4] = {0, 0, 1, 1}, il[4] = {1, 1, 0, 0};
  ck_assert_double_eq(auroc_of(p, pl, 4), 1.0);
  ck_assert_double_eq(auroc_of(p, il, 4), 0.0);
  /* -0 and +0 are one score; infinities are ordinary extremes. */
  const float z[4] = {-0.0f, 0.0f, -INFINITY, INFINITY};
  const uint8_t zl[4] = {1, 0, 0, 1};
  ck_assert_double_eq_tol(auroc_of(z, zl, 4), (0.5 + 1 + 1 + 1) / 4.0, 1e-15);
}
END_TEST

START_TEST(auroc_errors) {
  const float s[3] = {1, 2, NAN};
  const uint8_t l[3] = {1, 0, 1}, one[3] = {1, 1, 1};
  double v;
  ck_assert_int_eq(grad_eval_auroc(s, l, 3, &v), GRAD_E_NUMERIC);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "2 is NaN"));
  ck_assert_int_eq(grad_eval_auroc(s, one, 2, &v), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_eval_auroc(NULL, l, 2, &v), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_eval_auroc(s, l, 0, &v), GRAD_E_INVALID_ARG);
  float f1t;
  ck_assert_int_eq(grad_eval_f1_max(s, (const uint8_t[]){0, 0}, 2, &v, &f1t),
                   GRAD_E_INVALID_ARG);
}
END_TEST

START_TEST(f1_max_by_hand) {
  /* Thresholds 0.9 .. 0.5 give F1 2/3, 1/2, 4/5, 2/3, 4/7: best 0.8 at 0.7. */
  const float s[5] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
  const uint8_t l[5] = {1, 0, 1, 0, 0};
  double f1;
  float t;
  ck_assert_int_eq(grad_eval_f1_max(s, l, 5, &f1, &t), GRAD_OK);
  ck_assert_double_eq_tol(f1, 0.8, 1e-15);
  ck_assert_float_eq(t, 0.7f);
  /* Tied scores enter together: at t = 0.5 a positive and a negative come
   * in at once (TP 2, FP 1 -> 0.8, above 2/3 at t = 0.9). */
  const float tie[3] = {0.9f, 0.5f, 0.5f};
  const uint8_t tl[3] = {1, 1, 0};
  ck_assert_int_eq(grad_eval_f1_max(tie, tl, 3, &f1, &t), GRAD_OK);
  ck_assert_double_eq_tol(f1, 0.8, 1e-15);
  ck_assert_float_eq(t, 0.5f);
}
END_TEST

/* Two 1 x 4 maps. A: scores .9 .8 .1 .7, region {0,1}; B: .2 .6 .3 b3,
 * region {3}. Normal pixels .1 .7 .2 .6 .3. */
static double aupro_two_images(float b3, double limit, size_t *regions) {
  const float a[4] = {0.9f, 0.8f, 0.1f, 0.7f}, b[4] = {0.2f, 0.6f, 0.3f, b3};
  const uint8_t ma[4] = {255, 255, 0, 0}, mb[4] = {0, 0, 0, 1};
  grad_pixel_metrics *pm = NULL;
  ck_assert_int_eq(grad_pixel_metrics_create(&pm), GRAD_OK);
  ck_assert_int_eq(grad_pixel_metrics_add(pm, a, ma, 4, 1), GRAD_OK);
  ck_assert_int_eq(grad_pixel_metrics_add(pm, b, mb, 4, 1), GRAD_OK);
  double v = -1;
  ck_assert_int_eq(grad_pixel_metrics_aupro(pm, limit, &v), GRAD_OK);
  *regions = grad_pixel_metrics_regions(pm);
  grad_pixel_metrics_free(pm);
  return v;
}

START_TEST(aupro_by_hand) {
  size_t regions;
  /* Curve: (0,.25) (0,.5) (.2,.5) (.4,.5) (.4,1) (.6,1) (.8,1) (1,1).
   * Up to .3: .5 * .2 + .5 * .1 = .15, / .3 = .5. */
  ck_assert_double_eq_tol(aupro_two_images(0.4f, 0.3, &regions), 0.5, 1e-12);
  ck_assert_uint_eq(regions, 2);
  /* Up to .5: .1 + .1 + 1 * .1 = .3, / .5 = .6. Up to 1: .8. */
  ck_assert_double_eq_tol(aupro_two_images(0.4f, 0.5, &regions), 0.6, 1e-12);
  ck_assert_double_eq_tol(aupro_two_images(0.4f, 1.0, &regions), 0.8, 1e-12);
  /* B's region tied with the normal .6: one point (.4, 1) after (.2, .5);
   * PRO at .3 interpolates to .75: (.1 + .5 (.5 + .75) .1) / .3. */
  ck_assert_double_eq_tol(aupro_two_images(0.6f, 0.3, &regions), 0.1625 / 0.3, 1e-12);
}
END_TEST

START_TEST(regions_are_8_connected) {
  /* Two pixels touching at a corner are one region (MVTec's 3x3 structure);
   * a third pixel two columns away is another. */
  const uint8_t mask[3 * 5] = {1, 0, 0, 0, 1,
                               0, 1, 0, 0, 0,
                               0, 0, 0, 0, 0};
  float map[15];
  for (int i = 0; i < 15; i++) map[i] = (float)i;
  grad_pixel_metrics *pm = NULL;
  ck_assert_int_eq(grad_pixel_metrics_create(&pm), GRAD_OK);
  ck_assert_int_eq(grad_pixel_metrics_add(pm, map, mask, 5, 3), GRAD_OK);
  ck_assert_uint_eq(grad_pixel_metrics_regions(pm), 2);
  ck_assert_int_eq(grad_pixel_metrics_add(pm, map, NULL, 5, 3), GRAD_OK); /* a good image */
  ck_assert_uint_eq(grad_pixel_metrics_pixels(pm), 30);
  ck_assert_uint_eq(grad_pixel_metrics_regions(pm), 2);
  map[7] = NAN;
  ck_assert_int_eq(grad_pixel_metrics_add(pm, map, mask, 5, 3), GRAD_E_NUMERIC);
  ck_assert_uint_eq(grad_pixel_metrics_pixels(pm), 30); /* nothing added */
  double v;
  ck_assert_int_eq(grad_pixel_metrics_aupro(pm, 0.0, &v), GRAD_E_INVALID_ARG);
  grad_pixel_metrics_free(pm);
  /* No regions at all: AUPRO is undefined. */
  ck_assert_int_eq(grad_pixel_metrics_create(&pm), GRAD_OK);
  map[7] = 7;
  ck_assert_int_eq(grad_pixel_metrics_add(pm, map, NULL, 5, 3), GRAD_OK);
  ck_assert_int_eq(grad_pixel_metrics_aupro(pm, 0.3, &v), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_pixel_metrics_auroc(pm, &v), GRAD_E_INVALID_ARG);
  grad_pixel_metrics_free(pm);
  grad_pixel_metrics_free(NULL);
}
END_TEST

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

START_TEST(radix_sort_matches_qsort) {
  /* Sizes around the insertion-sort cut-off and large ones; values with
   * many ties, both signs, zeros of both signs, infinities, denormals. */
  const size_t sizes[] = {0, 1, 2, 47, 48, 49, 1000, 200003};
  unsigned state = 7u;
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    size_t n = sizes[t];
    float *v = malloc((n + 1) * sizeof *v);
    uint32_t *k = malloc((n + 1) * sizeof *k);
    for (size_t i = 0; i < n; i++) {
      state = state * 1103515245u + 12345u;
      unsigned r = state >> 8;
      switch (r % 7) {
        case 0: v[i] = (float)(r % 50) - 25.0f; break;
        case 1: v[i] = (r & 1) ? -0.0f : 0.0f; break;
        case 2: v[i] = (r & 1) ? INFINITY : -INFINITY; break;
        case 3: v[i] = (float)((r & 1) ? 1e-40 : -1e-40); break;
        default: v[i] = ((float)r / 16777216.0f - 0.5f) * 1e6f; break;
      }
      k[i] = grad__float_key(v[i]);
    }
    grad__sort_u32(k, n);
    qsort(v, n, sizeof *v, cmp_float);
    for (size_t i = 0; i < n; i++) {
      float back = grad__key_float(k[i]);
      ck_assert_msg(back == v[i] && (i == 0 || k[i - 1] <= k[i]), "n %zu, at %zu: %g vs %g", n,
                    i, back, v[i]);
    }
    free(v);
    free(k);
  }
  /* The 64-bit variant sorts by the high half and keeps the payloads. */
  uint64_t pairs[500];
  uint64_t payload_sum = 0;
  for (int i = 0; i < 500; i++) {
    state = state * 1103515245u + 12345u;
    pairs[i] = (uint64_t)(state % 97) << 32 | (uint64_t)i;
    payload_sum += (uint64_t)i;
  }
  grad__sort_u64_high(pairs, 500);
  uint64_t sum = 0;
  for (int i = 0; i < 500; i++) {
    if (i) ck_assert_uint_le(pairs[i - 1] >> 32, pairs[i] >> 32);
    sum += (uint32_t)pairs[i];
  }
  ck_assert_uint_eq(sum, payload_sum);
}
END_TEST

START_TEST(image_metrics_match_numpy) {
  float *s = load_fixture("metrics_scores.bin", 200 * sizeof(float));
  uint8_t *l = load_fixture("metrics_labels.bin", 200);
  ck_assert_double_eq_tol(auroc_of(s, l, 200), expected("image_auroc"), 1e-12);
  double f1;
  float t;
  ck_assert_int_eq(grad_eval_f1_max(s, l, 200, &f1, &t), GRAD_OK);
  ck_assert_double_eq_tol(f1, expected("image_f1"), 1e-12);
  ck_assert_double_eq_tol(t, expected("image_f1_threshold"), 1e-7);
  free(s);
  free(l);
}
END_TEST

START_TEST(pixel_metrics_match_numpy) {
  const int n = 6, h = 24, w = 32;
  const size_t plane = (size_t)h * w;
  float *maps = load_fixture("metrics_maps.bin", n * plane * sizeof(float));
  uint8_t *masks = load_fixture("metrics_masks.bin", n * plane);
  grad_pixel_metrics *pm = NULL;
  ck_assert_int_eq(grad_pixel_metrics_create(&pm), GRAD_OK);
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(grad_pixel_metrics_add(pm, maps + i * plane, i < 2 ? NULL : masks + i * plane,
                                            w, h), GRAD_OK);
  ck_assert_uint_eq(grad_pixel_metrics_regions(pm), (size_t)expected("pixel_regions"));
  double v;
  float t;
  ck_assert_int_eq(grad_pixel_metrics_auroc(pm, &v), GRAD_OK);
  ck_assert_double_eq_tol(v, expected("pixel_auroc"), 1e-12);
  ck_assert_int_eq(grad_pixel_metrics_f1_max(pm, &v, &t), GRAD_OK);
  ck_assert_double_eq_tol(v, expected("pixel_f1"), 1e-12);
  ck_assert_double_eq_tol(t, expected("pixel_f1_threshold"), 1e-7);
  ck_assert_int_eq(grad_pixel_metrics_aupro(pm, GRAD_AUPRO_FPR_LIMIT, &v), GRAD_OK);
  ck_assert_double_eq_tol(v, expected("aupro_0.3"), 1e-12);
  ck_assert_int_eq(grad_pixel_metrics_aupro(pm, 0.05, &v), GRAD_OK);
  ck_assert_double_eq_tol(v, expected("aupro_0.05"), 1e-12);
  ck_assert_int_eq(grad_pixel_metrics_aupro(pm, 1.0, &v), GRAD_OK);
  ck_assert_double_eq_tol(v, expected("aupro_1.0"), 1e-12);
  /* Image-level AUROC over the same pixels, flat, gives the same value. */
  uint8_t *flat = malloc(n * plane);
  for (size_t i = 0; i < n * plane; i++) flat[i] = i >= 2 * plane && masks[i];
  ck_assert_double_eq_tol(auroc_of(maps, flat, n * plane), expected("pixel_auroc"), 1e-12);
  grad_pixel_metrics_free(pm);
  free(maps);
  free(masks);
  free(flat);
}
END_TEST

START_TEST(quantile_by_hand) {
  const float v[5] = {4, 1, 3, 2, 5};
  double q;
  ck_assert_int_eq(grad__quantile(v, 5, 0.5, &q), GRAD_OK);
  ck_assert_double_eq(q, 3.0);
  ck_assert_int_eq(grad__quantile(v, 5, 0.9, &q), GRAD_OK); /* 3.6 -> 4 + 0.6 */
  ck_assert_double_eq_tol(q, 4.6, 1e-12);
  ck_assert_int_eq(grad__quantile(v, 5, 1.0, &q), GRAD_OK);
  ck_assert_double_eq(q, 5.0);
  ck_assert_int_eq(grad__quantile(v, 1, 0.99, &q), GRAD_OK);
  ck_assert_double_eq(q, 4.0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("metrics");
  TCase *tc = tcase_create("metrics");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, auroc_by_hand);
  tcase_add_test(tc, auroc_errors);
  tcase_add_test(tc, f1_max_by_hand);
  tcase_add_test(tc, aupro_by_hand);
  tcase_add_test(tc, regions_are_8_connected);
  tcase_add_test(tc, radix_sort_matches_qsort);
  tcase_add_test(tc, image_metrics_match_numpy);
  tcase_add_test(tc, pixel_metrics_match_numpy);
  tcase_add_test(tc, quantile_by_hand);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
