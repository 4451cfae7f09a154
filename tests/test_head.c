/*
 * The scoring head: the map and score against PyTorch goldens
 * (tests/make_head_golden.py), the box filter and average pool against
 * brute-force nested loops, bilinear align_corners properties, threshold
 * calibration and normalisation by hand, and the model-file round trip.
 */
#include <grad/head.h>

#include "box_filter.h"
#include "fusion.h"
#include "head_internal.h"
#include "testutil.h"
#include "upsample.h"

/* ---- Fixture helpers ---------------------------------------------------- */

static float *load_floats(const char *name, size_t count) {
  char fname[256];
  snprintf(fname, sizeof fname, "head/%s", name);
  FILE *f = fopen(test_fixture(fname), "rb");
  ck_assert_msg(f != NULL, "cannot open fixture %s", fname);
  float *v = malloc(count * sizeof *v + 4);
  size_t got = fread(v, sizeof *v, count + 1, f);
  fclose(f);
  ck_assert_msg(got == count, "fixture %s holds %zu floats, expected %zu", fname, got, count);
  return v;
}

/* The value after "key " in head/expected.txt, as text. */
static const char *expected(const char *key) {
  static char line[512];
  FILE *f = fopen(test_fixture("head/expected.txt"), "r");
  ck_assert_msg(f != NULL, "cannot open head/expected.txt");
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, key, klen) && line[klen] == ' ') {
      fclose(f);
      line[strcspn(line, "\n")] = 0;
      return line + klen + 1;
    }
  }
  fclose(f);
  ck_abort_msg("key %s not in expected.txt", key);
  return NULL;
}

static unsigned lcg = 2024u;
static float uniform01(void) {
  lcg = lcg * 1664525u + 1013904223u;
  return (float)((lcg >> 8) / 16777216.0);
}

/* ---- Golden map and score ----------------------------------------------- */

static void check_golden_case(const char *name) {
  char key[64], file[64];
  int c, h, w, s;
  snprintf(key, sizeof key, "%s_shape", name);
  ck_assert_int_eq(sscanf(expected(key), "%d %d %d %d", &c, &h, &w, &s), 4);
  const size_t n = (size_t)c * h * w, plane = (size_t)s * s;
  snprintf(file, sizeof file, "%s_R.bin", name);
  float *R = load_floats(file, n);
  snprintf(file, sizeof file, "%s_F.bin", name);
  float *F = load_floats(file, n);
  snprintf(file, sizeof file, "%s_a.bin", name);
  float *a_ref = load_floats(file, (size_t)h * w);
  snprintf(file, sizeof file, "%s_up.bin", name);
  float *up_ref = load_floats(file, plane);
  snprintf(file, sizeof file, "%s_map.bin", name);
  float *map_ref = load_floats(file, plane);
  snprintf(key, sizeof key, "%s_score", name);
  const double score_ref = atof(expected(key));

  /* Each stage on its own, so a mismatch says where it starts. */
  float *a = malloc((size_t)h * w * sizeof *a), *up = malloc(plane * sizeof *up);
  grad__fusion_anomaly(R, F, c, (size_t)h * w, a);
  ck_assert_close_rel(a, a_ref, (size_t)h * w, 1e-5);
  grad__resize_bilinear_ac(a_ref, 1, h, w, up, s, s);
  ck_assert_close_rel(up, up_ref, plane, 1e-5);

  grad_head *head = NULL;
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_head_create(s, &head), GRAD_OK);
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  float *map = malloc(plane * sizeof *map), score = -1, score_only = -2;
  ck_assert_int_eq(grad_head_map(head, ws, R, F, c, h, w, map, &score), GRAD_OK);
  ck_assert_close_rel(map, map_ref, plane, 1e-4);
  ck_assert_msg(fabs(score - score_ref) <= 1e-4 * fabs(score_ref), "score %.9g, torch %.9g",
                score, score_ref);
  /* The score alone (no map buffer) is the same number. */
  ck_assert_int_eq(grad_head_map(head, ws, R, F, c, h, w, NULL, &score_only), GRAD_OK);
  ck_assert_float_eq(score, score_only);
  /* The workspace is released: a second call needs no more memory. */
  size_t bytes = grad_workspace_bytes(ws);
  ck_assert_int_eq(grad_head_map(head, ws, R, F, c, h, w, map, &score), GRAD_OK);
  ck_assert_uint_eq(grad_workspace_bytes(ws), bytes);

  grad_workspace_free(ws);
  grad_head_free(head);
  free(R), free(F), free(a_ref), free(up_ref), free(map_ref), free(a), free(up), free(map);
}

START_TEST(golden_224_from_28) {
  check_golden_case("case1");
  /* The fixture exercises both branches of the fusion's mask. */
  ck_assert_int_gt(atoi(expected("case1_m_zero")), 0);
  ck_assert_int_lt(atoi(expected("case1_m_zero")), 28 * 28);
}
END_TEST

START_TEST(golden_non_square_small) { check_golden_case("case2"); }
END_TEST

/* ---- Box filter and pool against nested loops --------------------------- */

static void brute_box(const float *in, int h, int w, int k, int pad, double scale, float *out) {
  int oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++) {
      double sum = 0;
      for (int dy = 0; dy < k; dy++)
        for (int dx = 0; dx < k; dx++) {
          int y = oy - pad + dy, x = ox - pad + dx;
          if (y >= 0 && y < h && x >= 0 && x < w) sum += in[(size_t)y * w + x];
        }
      out[(size_t)oy * ow + ox] = (float)(sum * scale);
    }
}

static const struct {
  int h, w, k, pad;
} box_cases[] = {
  {37, 23, 21, 10},  /* the head's window on an odd plane smaller than it in x */
  {9, 13, 21, 10},   /* window larger than the whole plane */
  {31, 29, 5, 0},    /* no padding: the output shrinks */
  {17, 19, 7, 3},
  {1, 1, 21, 10},
  {40, 33, 32, 0},   /* the pool's window, valid only */
};

START_TEST(box_filter_matches_brute_force) {
  int h = box_cases[_i].h, w = box_cases[_i].w, k = box_cases[_i].k, pad = box_cases[_i].pad;
  int oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
  float *in = malloc((size_t)h * w * sizeof *in);
  /* Values far from zero make cancellation in the integral image visible. */
  for (int i = 0; i < h * w; i++) in[i] = 1000.0f + uniform01();
  float *out = malloc((size_t)oh * ow * sizeof *out), *ref = malloc((size_t)oh * ow * sizeof *ref);
  double *integral = malloc(grad__integral_size(h, w) * sizeof *integral);
  double scale = 1.0 / ((double)k * k);
  grad__box_filter(in, h, w, k, pad, scale, out, integral);
  brute_box(in, h, w, k, pad, scale, ref);
  ck_assert_close_rel(out, ref, (size_t)oh * ow, 1e-6);
  free(in), free(out), free(ref), free(integral);
}
END_TEST

START_TEST(avg_pool_max_matches_brute_force) {
  const int h = 45, w = 39;
  float *in = malloc((size_t)h * w * sizeof *in);
  for (int i = 0; i < h * w; i++) in[i] = uniform01() - 0.5f;
  in[30 * w + 20] = 40.0f; /* a peak, so the maximum window is unique */
  double *integral = malloc(grad__integral_size(h, w) * sizeof *integral);
  const int ks[] = {32, 1, 7, 39};
  for (int t = 0; t < 4; t++) {
    int k = ks[t], oh = h - k + 1, ow = w - k + 1;
    float *ref = malloc((size_t)oh * ow * sizeof *ref);
    brute_box(in, h, w, k, 0, 1.0 / ((double)k * k), ref);
    double best = ref[0];
    for (int i = 1; i < oh * ow; i++)
      if (ref[i] > best) best = ref[i];
    double got = grad__avg_pool_max(in, h, w, k, integral);
    ck_assert_msg(fabs(got - best) <= 1e-6 * fabs(best) + 1e-7, "k %d: %g vs %g", k, got, best);
    free(ref);
  }
  free(in), free(integral);
}
END_TEST

/* ---- Bilinear align_corners=True ------------------------------------------ */

START_TEST(upsample_properties) {
  /* A linear ramp is reproduced exactly, and the corners coincide. */
  const int ih = 5, iw = 7, oh = 13, ow = 29;
  float in[5 * 7], out[13 * 29];
  for (int y = 0; y < ih; y++)
    for (int x = 0; x < iw; x++) in[y * iw + x] = 3.0f * x - 2.0f * y + 1.0f;
  grad__resize_bilinear_ac(in, 1, ih, iw, out, oh, ow);
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++) {
      double sx = x * (iw - 1.0) / (ow - 1), sy = y * (ih - 1.0) / (oh - 1);
      ck_assert_double_eq_tol(out[y * ow + x], 3 * sx - 2 * sy + 1, 1e-5);
    }
  ck_assert_float_eq(out[0], in[0]);
  ck_assert_float_eq(out[oh * ow - 1], in[ih * iw - 1]);
  /* A 1 x 1 plane spreads everywhere; several planes stay separate. */
  float two[2] = {4.0f, -1.5f}, big[2 * 6 * 4];
  grad__resize_bilinear_ac(two, 2, 1, 1, big, 6, 4);
  for (int i = 0; i < 24; i++) {
    ck_assert_float_eq(big[i], 4.0f);
    ck_assert_float_eq(big[24 + i], -1.5f);
  }
}
END_TEST

/* ---- API contracts ------------------------------------------------------- */

START_TEST(map_rejects_bad_input) {
  grad_head *head = NULL;
  ck_assert_int_eq(grad_head_create(31, &head), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(head);
  ck_assert_int_eq(grad_head_create(32, &head), GRAD_OK);
  ck_assert_int_eq(grad_head_size(head), 32);
  ck_assert_int_eq(grad_head_smooth_size(head), 21);
  ck_assert_int_eq(grad_head_pool_size(head), 32);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  float R[2 * 3 * 3], F[2 * 3 * 3], map[32 * 32], score;
  for (int i = 0; i < 18; i++) R[i] = F[i] = (float)i;
  ck_assert_int_eq(grad_head_map(head, ws, R, F, 0, 3, 3, map, &score), GRAD_E_SHAPE);
  ck_assert_int_eq(grad_head_map(head, NULL, R, F, 2, 3, 3, map, &score), GRAD_E_INVALID_ARG);
  R[4] = NAN;
  ck_assert_int_eq(grad_head_map(head, ws, R, F, 2, 3, 3, map, &score), GRAD_E_NUMERIC);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "NaN"));
  R[4] = 4.0f;
  /* R == F: nothing is anomalous, the map and the score are exactly 0. */
  ck_assert_int_eq(grad_head_map(head, ws, R, F, 2, 3, 3, map, &score), GRAD_OK);
  ck_assert_float_eq(score, 0.0f);
  for (int i = 0; i < 32 * 32; i++) ck_assert_float_eq(map[i], 0.0f);
  grad__alloc_fail_after(0);
  grad_head *other = NULL;
  ck_assert_int_eq(grad_head_create(64, &other), GRAD_E_NOMEM);
  grad__alloc_fail_after(-1);
  grad_workspace_free(ws);
  grad_head_free(head);
  grad_head_free(NULL);
}
END_TEST

START_TEST(resize_map_to_image_size) {
  grad_head *head = NULL;
  ck_assert_int_eq(grad_head_create(40, &head), GRAD_OK);
  float map[40 * 40], out[70 * 50];
  for (int i = 0; i < 1600; i++) map[i] = 0.25f;
  ck_assert_int_eq(grad_head_resize_map(head, map, 70, 50, out), GRAD_OK);
  for (int i = 0; i < 70 * 50; i++) ck_assert_float_eq_tol(out[i], 0.25f, 1e-6f);
  ck_assert_int_eq(grad_head_resize_map(head, NULL, 70, 50, out), GRAD_E_INVALID_ARG);
  grad_head_free(head);
}
END_TEST

/* ---- Calibration ----------------------------------------------------------- */

START_TEST(calibrate_few_normals_max_margin) {
  grad_head *head = NULL;
  ck_assert_int_eq(grad_head_create(32, &head), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_NONE);
  ck_assert(isnan(grad_head_image_threshold(head)));
  ck_assert(isnan(grad_head_normalize_score(head, 1.0)));
  ck_assert_int_eq(grad_head_is_anomalous(head, 1e30), 0);
  uint8_t mask[4];
  float values[4] = {0, 1, 2, 3};
  ck_assert_int_eq(grad_head_mask(head, values, 4, mask), GRAD_E_STATE);

  /* 5 images (< 100): threshold = max + 0.1 (max - min) = 3 + 0.1 * 2 = 3.2. */
  float scores[5] = {1.5f, 3.0f, 1.0f, 2.0f, 2.5f};
  /* Maps of 3 values: per-image maxima 0.5, 0.9, 0.7, 0.6, 0.8; all values in [0.1, 0.9]. */
  float maps[15] = {0.1f, 0.5f, 0.2f, 0.9f, 0.3f, 0.3f, 0.7f, 0.4f, 0.2f,
                    0.6f, 0.6f, 0.6f, 0.8f, 0.5f, 0.4f};
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, maps, 5, 3, NULL), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_MAX_MARGIN);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 3.2, 1e-12);
  ck_assert_int_eq(grad_head_pixel_rule(head), GRAD_THRESHOLD_MAX_MARGIN);
  ck_assert_double_eq_tol(grad_head_pixel_threshold(head), 0.9 + 0.1 * (0.9 - 0.5), 1e-6);
  /* n(s) = clamp((s - 3.2) / (3 - 1) + 0.5, 0, 1). */
  ck_assert_double_eq_tol(grad_head_normalize_score(head, 3.2), 0.5, 1e-12);
  ck_assert_double_eq_tol(grad_head_normalize_score(head, 3.6), 0.7, 1e-12);
  ck_assert_double_eq_tol(grad_head_normalize_score(head, 0.0), 0.0, 1e-12);
  ck_assert_double_eq_tol(grad_head_normalize_score(head, 9.0), 1.0, 1e-12);
  ck_assert_int_eq(grad_head_is_anomalous(head, 3.2), 1);
  ck_assert_int_eq(grad_head_is_anomalous(head, 3.1999), 0);
  /* Pixel threshold 0.94, range [0.1, 0.9]. */
  float px[4] = {0.94f, 0.93f, 1.5f, 0.1f}, norm[4];
  ck_assert_int_eq(grad_head_mask(head, px, 4, mask), GRAD_OK);
  ck_assert_int_eq(mask[0], 255);
  ck_assert_int_eq(mask[1], 0);
  ck_assert_int_eq(mask[2], 255);
  ck_assert_int_eq(mask[3], 0);
  ck_assert_int_eq(grad_head_normalize_map(head, px, 4, norm), GRAD_OK);
  ck_assert_float_eq_tol(norm[0], 0.5f, 1e-6f);
  ck_assert_float_eq_tol(norm[1], 0.5f - 0.01f / 0.8f, 1e-6f);
  ck_assert_float_eq_tol(norm[2], 1.0f, 1e-6f);
  ck_assert_float_eq_tol(norm[3], 0.0f, 1e-6f);
  grad_head_free(head);
}
END_TEST

START_TEST(calibrate_many_normals_quantile) {
  grad_head *head = NULL;
  ck_assert_int_eq(grad_head_create(32, &head), GRAD_OK);
  /* 200 scores 0..199 (shuffled): the 0.99 quantile interpolates at
   * 0.99 * 199 = 197.01 between order statistics 197 and 198. */
  float scores[200];
  for (int i = 0; i < 200; i++) scores[i] = (float)((i * 37) % 200);
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 200, 0, NULL), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_QUANTILE);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 197.01, 1e-9);
  ck_assert_int_eq(grad_head_pixel_rule(head), GRAD_THRESHOLD_NONE); /* no maps given */
  /* Exactly 100 images switch to the quantile (100 * 0.01 = 1 above it). */
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 100, 0, NULL), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_QUANTILE);
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 99, 0, NULL), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_MAX_MARGIN);
  /* Custom options; a failing call leaves the head as it was. */
  grad_calibration_options o;
  grad_calibration_options_init(&o, sizeof o);
  o.quantile = 0.5;
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 200, 0, &o), GRAD_OK);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 99.5, 1e-9);
  scores[3] = INFINITY;
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 200, 0, &o), GRAD_E_NUMERIC);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 99.5, 1e-9);
  o.quantile = 0.0;
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 200, 0, &o),
                   GRAD_E_INVALID_ARG);
  grad_head_free(head);
}
END_TEST

START_TEST(calibrate_labelled_f1) {
  grad_head *head = NULL;
  ck_assert_int_eq(grad_head_create(32, &head), GRAD_OK);
  /* By hand: t = 0.7 gives TP 2, FP 1, F1 = 4 / 5, the best. */
  float scores[5] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
  uint8_t labels[5] = {1, 0, 1, 0, 0};
  float px[6] = {0.1f, 0.2f, 0.35f, 0.3f, 0.9f, 0.05f};
  uint8_t pl[6] = {0, 0, 1, 0, 1, 0};
  ck_assert_int_eq(grad_head_calibrate_labelled(head, scores, labels, 5, px, pl, 6), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_F1);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 0.7, 1e-7);
  ck_assert_double_eq_tol(grad_head_normalize_score(head, 0.9), (0.9 - 0.7) / 0.4 + 0.5, 1e-6);
  ck_assert_double_eq_tol(grad_head_pixel_threshold(head), 0.35, 1e-7);
  uint8_t one_class[5] = {0, 0, 0, 0, 0};
  ck_assert_int_eq(grad_head_calibrate_labelled(head, scores, one_class, 5, NULL, NULL, 0),
                   GRAD_E_INVALID_ARG);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 0.7, 1e-7);
  ck_assert_int_eq(grad_head_set_image_threshold(head, 2.0, 1.0, 3.0), GRAD_OK);
  ck_assert_int_eq(grad_head_image_rule(head), GRAD_THRESHOLD_MANUAL);
  ck_assert_int_eq(grad_head_set_image_threshold(head, 2.0, 3.0, 1.0), GRAD_E_INVALID_ARG);
  ck_assert_str_eq(grad_threshold_rule_name(GRAD_THRESHOLD_MAX_MARGIN), "max_margin");
  grad_head_free(head);
}
END_TEST

/* ---- Model file ------------------------------------------------------------ */

static grad__st_file *save_and_open(grad__st_writer *w, const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/head.safetensors", dir);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_file *f = NULL;
  ck_assert_msg(grad__st_open(path, &f) == GRAD_OK, "%s", grad_last_error());
  return f;
}

START_TEST(model_file_round_trip) {
  const char *dir = test_tmpdir();
  grad_head *head = NULL, *back = NULL;
  ck_assert_int_eq(grad_head_create(224, &head), GRAD_OK);
  float scores[3] = {0.123456789f, 0.3f, 0.2f};
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 3, 0, NULL), GRAD_OK);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__head_write(head, w), GRAD_OK);
  grad__st_file *f = save_and_open(w, dir);
  ck_assert_int_eq(grad__head_read(f, &back), GRAD_OK);
  ck_assert_int_eq(grad_head_size(back), 224);
  ck_assert_int_eq(grad_head_image_rule(back), GRAD_THRESHOLD_MAX_MARGIN);
  ck_assert(grad_head_image_threshold(back) == grad_head_image_threshold(head)); /* bit-exact */
  ck_assert(grad_head_normalize_score(back, 0.25) == grad_head_normalize_score(head, 0.25));
  ck_assert_int_eq(grad_head_pixel_rule(back), GRAD_THRESHOLD_NONE);
  grad_head_free(back);
  grad__st_close(f);

  /* A corrupt threshold and a missing size are refused, naming the key. */
  ck_assert_int_eq(grad__st_writer_meta(w, "head.image_threshold", "zero"), GRAD_OK);
  f = save_and_open(w, dir);
  ck_assert_int_eq(grad__head_read(f, &back), GRAD_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "head.image_threshold"));
  ck_assert_ptr_null(back);
  grad__st_close(f);
  grad__st_writer_free(w);
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(w, "head.pool_size", "32"), GRAD_OK);
  f = save_and_open(w, dir);
  ck_assert_int_eq(grad__head_read(f, &back), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "head.size"));
  grad__st_close(f);
  grad__st_writer_free(w);
  grad_head_free(head);
}
END_TEST

int main(void) {
  Suite *s = suite_create("head");
  TCase *tc = tcase_create("head");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, golden_224_from_28);
  tcase_add_test(tc, golden_non_square_small);
  tcase_add_loop_test(tc, box_filter_matches_brute_force, 0,
                      (int)(sizeof box_cases / sizeof box_cases[0]));
  tcase_add_test(tc, avg_pool_max_matches_brute_force);
  tcase_add_test(tc, upsample_properties);
  tcase_add_test(tc, map_rejects_bad_input);
  tcase_add_test(tc, resize_map_to_image_size);
  tcase_add_test(tc, calibrate_few_normals_max_margin);
  tcase_add_test(tc, calibrate_many_normals_quantile);
  tcase_add_test(tc, calibrate_labelled_f1);
  tcase_add_test(tc, model_file_round_trip);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
