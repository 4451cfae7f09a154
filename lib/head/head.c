/*
 * The scoring head (docs/method.md section 7): anomaly map, image score,
 * threshold calibration, normalised scores and masks, model-file metadata.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grad/image.h>

#include "box_filter.h"
#include "fusion.h"
#include "head_internal.h"
#include "metrics.h"
#include "upsample.h"

enum { MAX_SIZE = 8192 };

typedef struct threshold_state {
  grad_threshold_rule rule;
  double threshold, lo, hi;  /* NaN while rule is NONE */
  size_t count;              /* calibration values it came from (0 if manual) */
} threshold_state;

struct grad_head {
  int size, smooth, pool;
  threshold_state image, pixel;
};

static void reset_threshold(threshold_state *t) {
  t->rule = GRAD_THRESHOLD_NONE;
  t->threshold = t->lo = t->hi = NAN;
  t->count = 0;
}

grad_status grad_head_create(int size, grad_head **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_head_create: out is NULL");
  *out = NULL;
  if (size < GRAD_HEAD_POOL_SIZE || size > MAX_SIZE)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_head_create: size %d is not in [%d, %d]", size,
                      GRAD_HEAD_POOL_SIZE, MAX_SIZE);
  grad_head *head = grad__calloc(1, sizeof *head);
  if (!head) return grad__fail(GRAD_E_NOMEM, "grad_head_create: out of memory");
  head->size = size;
  head->smooth = GRAD_HEAD_SMOOTH_SIZE;
  head->pool = GRAD_HEAD_POOL_SIZE;
  reset_threshold(&head->image);
  reset_threshold(&head->pixel);
  *out = head;
  return GRAD_OK;
}

void grad_head_free(grad_head *head) { grad__free(head); }

int grad_head_size(const grad_head *head) { return head ? head->size : 0; }
int grad_head_smooth_size(const grad_head *head) { return head ? head->smooth : 0; }
int grad_head_pool_size(const grad_head *head) { return head ? head->pool : 0; }

/* ---- Map and score ------------------------------------------------------ */

grad_status grad__head_map_anomaly(const grad_head *head, grad_workspace *ws, const float *a,
                                   int height, int width, float *map, float *score) {
  const size_t positions = (size_t)height * (size_t)width;
  for (size_t p = 0; p < positions; p++)
    if (!isfinite(a[p]))
      return grad__fail(GRAD_E_NUMERIC, "scoring head: anomaly value at (y %zu, x %zu) is not "
                        "finite", p / (size_t)width, p % (size_t)width);
  const int s = head->size;
  const size_t plane = (size_t)s * s;
  const size_t mark = grad__ws_mark(ws);
  float *up = grad__ws_floats(ws, plane);
  float *smoothed = map ? map : grad__ws_floats(ws, plane);
  double *integral = grad__ws_alloc(ws, grad__integral_size(s, s) * sizeof(double));
  if (!up || !smoothed || !integral) {
    grad__ws_release(ws, mark);
    return grad__fail_context(GRAD_E_NOMEM, "scoring head: ");
  }
  grad__resize_bilinear_ac(a, 1, height, width, up, s, s);
  /* Zero padding (smooth - 1) / 2 keeps the size; the divisor is always
   * smooth^2 (count_include_pad), so the border is darkened as in PyTorch. */
  grad__box_filter(up, s, s, head->smooth, (head->smooth - 1) / 2,
                   1.0 / ((double)head->smooth * head->smooth), smoothed, integral);
  if (score) *score = (float)grad__avg_pool_max(smoothed, s, s, head->pool, integral);
  grad__ws_release(ws, mark);
  return GRAD_OK;
}

grad_status grad_head_map(const grad_head *head, grad_workspace *ws, const float *R,
                          const float *F, int channels, int height, int width, float *map,
                          float *score) {
  if (!head || !ws || !R || !F)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_head_map: %s is NULL",
                      !head ? "head" : (!ws ? "ws" : (!R ? "R" : "F")));
  if (channels < 1 || height < 1 || width < 1 || height > MAX_SIZE || width > MAX_SIZE)
    return grad__fail(GRAD_E_SHAPE, "grad_head_map: R and F of %d x %d x %d (channels x height "
                      "x width) are not a valid feature map", channels, height, width);
  const size_t positions = (size_t)height * (size_t)width;
  const size_t mark = grad__ws_mark(ws);
  float *a = grad__ws_floats(ws, positions);
  if (!a) return grad__fail_context(GRAD_E_NOMEM, "grad_head_map: ");
  grad__fusion_anomaly(R, F, channels, positions, a);
  grad_status st = grad__head_map_anomaly(head, ws, a, height, width, map, score);
  grad__ws_release(ws, mark);
  if (st != GRAD_OK) {
    if (st == GRAD_E_NUMERIC)
      return grad__fail_context(st, "grad_head_map: R or F holds NaN or Inf");
    return grad__fail_context(st, "grad_head_map: ");
  }
  return GRAD_OK;
}

grad_status grad_head_resize_map(const grad_head *head, const float *map, int width, int height,
                                 float *out) {
  if (!head || !map || !out)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_head_resize_map: %s is NULL",
                      !head ? "head" : (!map ? "map" : "out"));
  grad_status st = grad_plane_resize(map, head->size, head->size, out, width, height);
  return st == GRAD_OK ? st : grad__fail_context(st, "grad_head_resize_map: ");
}

/* ---- Calibration -------------------------------------------------------- */

const char *grad_threshold_rule_name(grad_threshold_rule rule) {
  switch (rule) {
    case GRAD_THRESHOLD_NONE: return "none";
    case GRAD_THRESHOLD_QUANTILE: return "quantile";
    case GRAD_THRESHOLD_MAX_MARGIN: return "max_margin";
    case GRAD_THRESHOLD_F1: return "f1";
    case GRAD_THRESHOLD_MANUAL: return "manual";
  }
  return "unknown";
}

static const grad_calibration_options default_calibration = {
  .struct_size = sizeof(grad_calibration_options),
  .quantile = 0.99,
  .margin = 0.1,
};

void grad_calibration_options_init(grad_calibration_options *opts, size_t struct_size) {
  grad__struct_init(opts, struct_size, &default_calibration, sizeof default_calibration);
}

static grad_status check_finite(const float *v, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) return grad__fail(GRAD_E_NUMERIC, "%s %zu is not finite", what, i);
  return GRAD_OK;
}

static void min_max(const float *v, size_t n, double *lo, double *hi) {
  float a = v[0], b = v[0];
  for (size_t i = 1; i < n; i++) {
    if (v[i] < a) a = v[i];
    if (v[i] > b) b = v[i];
  }
  *lo = a;
  *hi = b;
}

/* The normal-data rule of grad_head_calibrate_normal on n >= 1 values. */
static grad_status normal_rule(const float *v, size_t n, const grad_calibration_options *o,
                               threshold_state *t) {
  double lo, hi;
  min_max(v, n, &lo, &hi);
  /* Tolerance for 1 - q not being exact in binary (100 * (1 - 0.99)). */
  if ((double)n * (1.0 - o->quantile) >= 1.0 - 1e-9) {
    grad_status st = grad__quantile(v, n, o->quantile, &t->threshold);
    if (st != GRAD_OK) return st;
    t->rule = GRAD_THRESHOLD_QUANTILE;
  } else {
    t->threshold = hi + o->margin * (hi - lo);
    t->rule = GRAD_THRESHOLD_MAX_MARGIN;
  }
  t->lo = lo;
  t->hi = hi;
  t->count = n;
  return GRAD_OK;
}

grad_status grad_head_calibrate_normal(grad_head *head, const float *image_scores,
                                       const float *maps, size_t count, size_t map_pixels,
                                       const grad_calibration_options *opts) {
  static const char *fn = "grad_head_calibrate_normal";
  if (!head || !image_scores)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: %s is NULL", fn, !head ? "head" : "image_scores");
  grad_calibration_options resolved = default_calibration;
  grad_status st = grad__struct_read("grad_calibration_options", opts,
                                     GRAD__STRUCT_MIN(grad_calibration_options, quantile),
                                     &resolved, sizeof resolved);
  if (st != GRAD_OK) return st;
  opts = &resolved;
  if (!(opts->quantile > 0.0 && opts->quantile <= 1.0) || !(opts->margin >= 0.0) ||
      !isfinite(opts->margin))
    return grad__fail(GRAD_E_INVALID_ARG, "%s: quantile %g must be in (0, 1] and margin %g "
                      "finite and >= 0", fn, opts->quantile, opts->margin);
  if (count == 0) return grad__fail(GRAD_E_INVALID_ARG, "%s: no normal images (count 0)", fn);
  if (maps && map_pixels == 0)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: maps of 0 pixels", fn);
  size_t total = 0;
  if (maps && !grad__mul_size(count, map_pixels, &total))
    return grad__fail(GRAD_E_TOO_LARGE, "%s: %zu maps of %zu pixels", fn, count, map_pixels);
  st = check_finite(image_scores, count, "image score");
  if (st == GRAD_OK && maps) st = check_finite(maps, total, "map value");
  if (st != GRAD_OK) return grad__fail_context(st, "%s: ", fn);

  threshold_state image, pixel = head->pixel;
  st = normal_rule(image_scores, count, opts, &image);
  if (st == GRAD_OK && maps) {
    float *peaks = grad__malloc_array(count, sizeof *peaks);
    if (!peaks) return grad__fail(GRAD_E_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; i < count; i++) {
      double lo, hi;
      min_max(maps + i * map_pixels, map_pixels, &lo, &hi);
      peaks[i] = (float)hi;
    }
    st = normal_rule(peaks, count, opts, &pixel);
    grad__free(peaks);
    /* The normalisation range spans every map value, not just the peaks. */
    if (st == GRAD_OK) min_max(maps, total, &pixel.lo, &pixel.hi);
  }
  if (st != GRAD_OK) return grad__fail_context(st, "%s: ", fn);
  head->image = image;
  head->pixel = pixel;
  return GRAD_OK;
}

/* The F1-optimal rule on a labelled set; needs both labels. */
static grad_status f1_rule(const float *v, const uint8_t *labels, size_t n, const char *what,
                           threshold_state *t) {
  grad_status st = check_finite(v, n, what);
  if (st != GRAD_OK) return st;
  uint32_t *pos, *neg;
  size_t np, nn;
  st = grad__split_sorted_keys(v, labels, n, what, &pos, &np, &neg, &nn);
  if (st != GRAD_OK) return st;
  if (np == 0 || nn == 0) {
    grad__free(pos);
    return grad__fail(GRAD_E_INVALID_ARG, "%s labels must include both classes: %zu anomalous, "
                      "%zu normal", what, np, nn);
  }
  float threshold;
  (void)grad__f1_max_sorted(pos, np, neg, nn, &threshold);
  grad__free(pos);
  t->rule = GRAD_THRESHOLD_F1;
  t->threshold = threshold;
  min_max(v, n, &t->lo, &t->hi);
  t->count = n;
  return GRAD_OK;
}

grad_status grad_head_calibrate_labelled(grad_head *head, const float *image_scores,
                                         const uint8_t *image_labels, size_t count,
                                         const float *pixels, const uint8_t *pixel_labels,
                                         size_t pixel_count) {
  static const char *fn = "grad_head_calibrate_labelled";
  if (!head || !image_scores || !image_labels || (pixels && !pixel_labels))
    return grad__fail(GRAD_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !head ? "head"
                            : (!image_scores ? "image_scores"
                                             : (!image_labels ? "image_labels" : "pixel_labels")));
  if (count == 0 || (pixels && pixel_count == 0))
    return grad__fail(GRAD_E_INVALID_ARG, "%s: no %s", fn, count == 0 ? "images" : "pixels");
  threshold_state image, pixel = head->pixel;
  grad_status st = f1_rule(image_scores, image_labels, count, "image score", &image);
  if (st == GRAD_OK && pixels) st = f1_rule(pixels, pixel_labels, pixel_count, "pixel", &pixel);
  if (st != GRAD_OK) return grad__fail_context(st, "%s: ", fn);
  head->image = image;
  head->pixel = pixel;
  return GRAD_OK;
}

static grad_status set_manual(grad_head *head, threshold_state *t, const char *fn,
                              double threshold, double lo, double hi) {
  if (!head) return grad__fail(GRAD_E_INVALID_ARG, "%s: head is NULL", fn);
  if (!isfinite(threshold) || !isfinite(lo) || !isfinite(hi) || lo > hi)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: threshold %g, range [%g, %g]: all must be "
                      "finite with lo <= hi", fn, threshold, lo, hi);
  t->rule = GRAD_THRESHOLD_MANUAL;
  t->threshold = threshold;
  t->lo = lo;
  t->hi = hi;
  t->count = 0;
  return GRAD_OK;
}

grad_status grad_head_set_image_threshold(grad_head *head, double threshold, double lo,
                                          double hi) {
  return set_manual(head, head ? &head->image : NULL, "grad_head_set_image_threshold",
                    threshold, lo, hi);
}

grad_status grad_head_set_pixel_threshold(grad_head *head, double threshold, double lo,
                                          double hi) {
  return set_manual(head, head ? &head->pixel : NULL, "grad_head_set_pixel_threshold",
                    threshold, lo, hi);
}

double grad_head_image_threshold(const grad_head *head) {
  return head ? head->image.threshold : NAN;
}
double grad_head_pixel_threshold(const grad_head *head) {
  return head ? head->pixel.threshold : NAN;
}
grad_threshold_rule grad_head_image_rule(const grad_head *head) {
  return head ? head->image.rule : GRAD_THRESHOLD_NONE;
}
grad_threshold_rule grad_head_pixel_rule(const grad_head *head) {
  return head ? head->pixel.rule : GRAD_THRESHOLD_NONE;
}

/* ---- Decisions ---------------------------------------------------------- */

static double normalize(const threshold_state *t, double v) {
  double range = t->hi - t->lo;
  if (!(range > 0.0)) range = t->threshold != 0.0 ? fabs(t->threshold) : 1.0;
  const double n = (v - t->threshold) / range + 0.5;
  return n < 0.0 ? 0.0 : (n > 1.0 ? 1.0 : n);
}

double grad_head_normalize_score(const grad_head *head, double score) {
  if (!head || head->image.rule == GRAD_THRESHOLD_NONE) return NAN;
  return normalize(&head->image, score);
}

int grad_head_is_anomalous(const grad_head *head, double score) {
  if (!head || head->image.rule == GRAD_THRESHOLD_NONE) return 0;
  return score >= head->image.threshold;
}

static grad_status check_pixel_call(const grad_head *head, const void *a, const void *b,
                                    const char *fn) {
  if (!head || !a || !b)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !head ? "head" : (!a ? "map" : "out"));
  if (head->pixel.rule == GRAD_THRESHOLD_NONE)
    return grad__fail(GRAD_E_STATE, "%s: the head has no pixel threshold yet (calibrate it "
                      "or set one)", fn);
  return GRAD_OK;
}

grad_status grad_head_normalize_map(const grad_head *head, const float *map, size_t count,
                                    float *out) {
  grad_status st = check_pixel_call(head, map, out, "grad_head_normalize_map");
  if (st != GRAD_OK) return st;
  for (size_t i = 0; i < count; i++) out[i] = (float)normalize(&head->pixel, map[i]);
  return GRAD_OK;
}

grad_status grad_head_mask(const grad_head *head, const float *map, size_t count,
                           uint8_t *mask) {
  grad_status st = check_pixel_call(head, map, mask, "grad_head_mask");
  if (st != GRAD_OK) return st;
  const double t = head->pixel.threshold;
  for (size_t i = 0; i < count; i++) mask[i] = map[i] >= t ? 255 : 0;
  return GRAD_OK;
}

/* ---- Model file --------------------------------------------------------- */

static grad_status put(grad__st_writer *w, const char *key, const char *fmt, ...)
    GRAD__PRINTF(3, 4);

static grad_status put(grad__st_writer *w, const char *key, const char *fmt, ...) {
  char value[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(value, sizeof value, fmt, ap);
  va_end(ap);
  return grad__st_writer_meta(w, key, value);
}

static grad_status write_threshold(grad__st_writer *w, const char *level,
                                   const threshold_state *t) {
  char key[64];
  snprintf(key, sizeof key, "head.%s_rule", level);
  grad_status st = grad__st_writer_meta(w, key, grad_threshold_rule_name(t->rule));
  if (st != GRAD_OK || t->rule == GRAD_THRESHOLD_NONE) return st;
  static const char *names[] = {"threshold", "lo", "hi"};
  const double values[] = {t->threshold, t->lo, t->hi};
  for (int i = 0; i < 3 && st == GRAD_OK; i++) {
    snprintf(key, sizeof key, "head.%s_%s", level, names[i]);
    st = put(w, key, "%.17g", values[i]);
  }
  snprintf(key, sizeof key, "head.%s_count", level);
  return st == GRAD_OK ? put(w, key, "%zu", t->count) : st;
}

grad_status grad__head_write(const grad_head *head, grad__st_writer *writer) {
  if (!head || !writer)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__head_write: %s is NULL",
                      !head ? "head" : "writer");
  grad_status st = put(writer, "head.size", "%d", head->size);
  if (st == GRAD_OK) st = put(writer, "head.smooth_size", "%d", head->smooth);
  if (st == GRAD_OK) st = put(writer, "head.pool_size", "%d", head->pool);
  if (st == GRAD_OK) st = write_threshold(writer, "image", &head->image);
  if (st == GRAD_OK) st = write_threshold(writer, "pixel", &head->pixel);
  return st == GRAD_OK ? st : grad__fail_context(st, "writing the scoring head: ");
}

/* A metadata value as a whole number or a finite double; errors name the key. */
static grad_status read_number(const grad__st_file *f, const char *key, bool required,
                               bool integer, double *out, bool *found) {
  const char *text = grad__st_meta(f, key);
  if (found) *found = text != NULL;
  if (!text) {
    if (!required) return GRAD_OK;
    return grad__fail(GRAD_E_MISSING, "%s: metadata \"%s\" is missing", grad__st_path(f), key);
  }
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) ||
      (integer && (v != floor(v) || fabs(v) > 1e15)))
    return grad__fail(GRAD_E_FORMAT, "%s: metadata \"%s\" = \"%s\" is not a %s",
                      grad__st_path(f), key, text, integer ? "whole number" : "finite number");
  *out = v;
  return GRAD_OK;
}

static grad_status read_threshold(const grad__st_file *f, const char *level,
                                  threshold_state *t) {
  char key[64];
  snprintf(key, sizeof key, "head.%s_rule", level);
  const char *rule = grad__st_meta(f, key);
  reset_threshold(t);
  if (!rule)
    return grad__fail(GRAD_E_MISSING, "%s: metadata \"%s\" (the decision rule) is missing",
                      grad__st_path(f), key);
  if (!strcmp(rule, "none")) return GRAD_OK;
  int r = GRAD_THRESHOLD_QUANTILE;
  for (; r <= GRAD_THRESHOLD_MANUAL; r++)
    if (!strcmp(rule, grad_threshold_rule_name((grad_threshold_rule)r))) break;
  if (r > GRAD_THRESHOLD_MANUAL)
    return grad__fail(GRAD_E_FORMAT, "%s: metadata \"%s\" = \"%s\" is not a threshold rule",
                      grad__st_path(f), key, rule);
  static const char *names[] = {"threshold", "lo", "hi", "count"};
  double values[4] = {0};
  for (int i = 0; i < 4; i++) {
    snprintf(key, sizeof key, "head.%s_%s", level, names[i]);
    grad_status st = read_number(f, key, i < 3, i == 3, &values[i], NULL);
    if (st != GRAD_OK) return st;
  }
  if (values[1] > values[2] || values[3] < 0)
    return grad__fail(GRAD_E_FORMAT, "%s: head.%s range [%g, %g] or count %g is invalid",
                      grad__st_path(f), level, values[1], values[2], values[3]);
  /* Where each rule puts the threshold relative to the calibration scores:
   * a quantile or an F1 cut is one of them, the max-margin rule is at or
   * above the largest; a manual threshold may be anywhere. */
  bool inside = values[0] >= values[1] && values[0] <= values[2];
  bool agrees = r == GRAD_THRESHOLD_MANUAL || (r == GRAD_THRESHOLD_MAX_MARGIN
                                                   ? values[0] >= values[2]
                                                   : inside);
  if (!agrees)
    return grad__fail(GRAD_E_FORMAT,
                      "%s: metadata \"head.%s_threshold\" = %.9g is %s the calibrated range "
                      "[%.9g, %.9g] of rule \"%s\"",
                      grad__st_path(f), level, values[0],
                      r == GRAD_THRESHOLD_MAX_MARGIN ? "below the top of" : "outside", values[1],
                      values[2], rule);
  t->rule = (grad_threshold_rule)r;
  t->threshold = values[0];
  t->lo = values[1];
  t->hi = values[2];
  t->count = (size_t)values[3];
  return GRAD_OK;
}

grad_status grad__head_read(const grad__st_file *file, grad_head **out) {
  if (!file || !out)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__head_read: %s is NULL", !file ? "file" : "out");
  *out = NULL;
  double size = 0, smooth = GRAD_HEAD_SMOOTH_SIZE, pool = GRAD_HEAD_POOL_SIZE;
  grad_status st = read_number(file, "head.size", true, true, &size, NULL);
  if (st == GRAD_OK) st = read_number(file, "head.smooth_size", false, true, &smooth, NULL);
  if (st == GRAD_OK) st = read_number(file, "head.pool_size", false, true, &pool, NULL);
  if (st != GRAD_OK) return st;
  if (smooth != GRAD_HEAD_SMOOTH_SIZE || pool != GRAD_HEAD_POOL_SIZE)
    return grad__fail(GRAD_E_UNSUPPORTED, "%s: head smoothing %g and pool %g; this libgrad "
                      "supports %d and %d", grad__st_path(file), smooth, pool,
                      GRAD_HEAD_SMOOTH_SIZE, GRAD_HEAD_POOL_SIZE);
  if (size < GRAD_HEAD_POOL_SIZE || size > MAX_SIZE)
    return grad__fail(GRAD_E_FORMAT, "%s: metadata \"head.size\" = %g is not in [%d, %d]",
                      grad__st_path(file), size, GRAD_HEAD_POOL_SIZE, MAX_SIZE);
  grad_head *head;
  st = grad_head_create((int)size, &head);
  if (st != GRAD_OK) return st;
  st = read_threshold(file, "image", &head->image);
  if (st == GRAD_OK) st = read_threshold(file, "pixel", &head->pixel);
  if (st != GRAD_OK) {
    grad_head_free(head);
    return st;
  }
  *out = head;
  return GRAD_OK;
}
