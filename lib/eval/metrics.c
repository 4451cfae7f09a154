/*
 * Image-level metrics and the sorting machinery shared by all metrics:
 * order-preserving keys, an in-place MSD radix sort (American flag sort),
 * exact AUROC and F1-max over sorted keys, quantiles.
 */
#include <math.h>
#include <string.h>

#include <grad/eval.h>

#include "metrics.h"

uint32_t grad__float_key(float v) {
  uint32_t bits;
  if (v == 0.0f) v = 0.0f; /* -0 and +0 are one score */
  memcpy(&bits, &v, sizeof bits);
  /* Negative floats order backwards as integers: flip all their bits;
   * positive ones just move above every negative one. */
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

float grad__key_float(uint32_t key) {
  uint32_t bits = (key & 0x80000000u) ? key & 0x7fffffffu : ~key;
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

/* Below this many values a bucket is finished by insertion sort. */
enum { SMALL_BUCKET = 48 };

/*
 * American flag sort: count the 8-bit digit at `shift`, permute the values
 * into their buckets in place by following cycles, recurse per bucket on
 * the next digit down to `last_shift`. O(n) per digit, no extra memory
 * beyond three 256-entry tables per level (at most 4 levels deep).
 */
#define DEFINE_FLAG_SORT(name, type, last_shift)                                 \
  static void name(type *a, size_t n, int shift) {                              \
    if (n < SMALL_BUCKET) {                                                     \
      for (size_t i = 1; i < n; i++) {                                          \
        type v = a[i];                                                          \
        size_t j = i;                                                           \
        for (; j > 0 && a[j - 1] > v; j--) a[j] = a[j - 1];                    \
        a[j] = v;                                                               \
      }                                                                         \
      return;                                                                   \
    }                                                                           \
    size_t count[256] = {0}, next[256], end[256];                               \
    for (size_t i = 0; i < n; i++) count[(a[i] >> shift) & 0xff]++;             \
    size_t at = 0;                                                              \
    for (int b = 0; b < 256; b++) {                                             \
      next[b] = at;                                                             \
      at += count[b];                                                           \
      end[b] = at;                                                              \
    }                                                                           \
    for (int b = 0; b < 256; b++) {                                             \
      while (next[b] < end[b]) {                                                \
        type v = a[next[b]];                                                    \
        int d = (int)((v >> shift) & 0xff);                                     \
        while (d != b) {                                                        \
          type displaced = a[next[d]];                                          \
          a[next[d]++] = v;                                                     \
          v = displaced;                                                        \
          d = (int)((v >> shift) & 0xff);                                       \
        }                                                                       \
        a[next[b]++] = v;                                                       \
      }                                                                         \
    }                                                                           \
    if (shift <= (last_shift)) return;                                          \
    for (int b = 0; b < 256; b++)                                               \
      if (count[b] > 1) name(a + (end[b] - count[b]), count[b], shift - 8);     \
  }

DEFINE_FLAG_SORT(flag_sort_u32, uint32_t, 0)
DEFINE_FLAG_SORT(flag_sort_u64, uint64_t, 32)

void grad__sort_u32(uint32_t *keys, size_t n) { flag_sort_u32(keys, n, 24); }

void grad__sort_u64_high(uint64_t *values, size_t n) { flag_sort_u64(values, n, 56); }

grad_status grad__split_sorted_keys(const float *scores, const uint8_t *labels, size_t n,
                                    const char *what, uint32_t **pos, size_t *npos,
                                    uint32_t **neg, size_t *nneg) {
  size_t np = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(scores[i])) return grad__fail(GRAD_E_NUMERIC, "%s %zu is NaN", what, i);
    np += labels[i] != 0;
  }
  uint32_t *keys = grad__malloc_array(n ? n : 1, sizeof *keys);
  if (!keys) return grad__fail(GRAD_E_NOMEM, "out of memory sorting %zu %s values", n, what);
  size_t ip = 0, in = np;
  for (size_t i = 0; i < n; i++) keys[labels[i] ? ip++ : in++] = grad__float_key(scores[i]);
  grad__sort_u32(keys, np);
  grad__sort_u32(keys + np, n - np);
  *pos = keys;
  *npos = np;
  *neg = keys + np;
  *nneg = n - np;
  return GRAD_OK;
}

double grad__auroc_sorted(const uint32_t *pos, size_t npos, const uint32_t *neg, size_t nneg) {
  /* Twice the Mann-Whitney U in integers, so ties (one half each) stay exact:
   * it is at most 2 * npos * nneg, far below 2^64 for any real input. */
  uint64_t twice_u = 0;
  size_t i = 0, j = 0;
  while (i < npos) {
    const uint32_t v = pos[i];
    size_t a = 0, below, b = 0;
    while (i < npos && pos[i] == v) i++, a++;
    while (j < nneg && neg[j] < v) j++;
    below = j;
    while (j < nneg && neg[j] == v) j++, b++;
    twice_u += (uint64_t)a * (2 * (uint64_t)below + b);
  }
  return (double)twice_u / (2.0 * (double)npos * (double)nneg);
}

double grad__f1_max_sorted(const uint32_t *pos, size_t npos, const uint32_t *neg, size_t nneg,
                           float *threshold) {
  /* Lower the threshold through the distinct scores from the top; at each
   * one F1 = 2 TP / (TP + FP + npos). Ties enter together. */
  size_t i = npos, j = nneg;
  uint64_t tp = 0, fp = 0;
  double best = -1.0;
  uint32_t best_key = 0;
  while (i > 0 || j > 0) {
    uint32_t v;
    if (i == 0 || (j > 0 && neg[j - 1] > pos[i - 1]))
      v = neg[j - 1];
    else
      v = pos[i - 1];
    while (i > 0 && pos[i - 1] == v) i--, tp++;
    while (j > 0 && neg[j - 1] == v) j--, fp++;
    const double f1 = 2.0 * (double)tp / ((double)tp + (double)fp + (double)npos);
    if (f1 > best) {
      best = f1;
      best_key = v;
    }
  }
  if (threshold) *threshold = grad__key_float(best_key);
  return best;
}

grad_status grad__quantile(const float *values, size_t n, double q, double *out) {
  uint32_t *keys = grad__malloc_array(n, sizeof *keys);
  if (!keys) return grad__fail(GRAD_E_NOMEM, "out of memory for a quantile of %zu values", n);
  for (size_t i = 0; i < n; i++) keys[i] = grad__float_key(values[i]);
  grad__sort_u32(keys, n);
  const double at = q * (double)(n - 1);
  size_t lo = (size_t)floor(at);
  if (lo > n - 1) lo = n - 1;
  const size_t hi = lo + 1 < n ? lo + 1 : lo;
  const double a = grad__key_float(keys[lo]), b = grad__key_float(keys[hi]);
  *out = a + (at - (double)lo) * (b - a);
  grad__free(keys);
  return GRAD_OK;
}

/* ---- Public image-level metrics --------------------------------------- */

static grad_status check_labelled(const char *fn, const float *scores, const uint8_t *labels,
                                  size_t count, const void *out) {
  if (!scores || !labels || !out)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !scores ? "scores" : (!labels ? "labels" : "the output"));
  if (count == 0) return grad__fail(GRAD_E_INVALID_ARG, "%s: no scores (count is 0)", fn);
  return GRAD_OK;
}

grad_status grad_eval_auroc(const float *scores, const uint8_t *labels, size_t count,
                            double *auroc) {
  grad_status st = check_labelled("grad_eval_auroc", scores, labels, count, auroc);
  if (st != GRAD_OK) return st;
  uint32_t *pos, *neg;
  size_t np, nn;
  st = grad__split_sorted_keys(scores, labels, count, "image score", &pos, &np, &neg, &nn);
  if (st != GRAD_OK) return grad__fail_context(st, "grad_eval_auroc: ");
  if (np == 0 || nn == 0) {
    grad__free(pos);
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_eval_auroc: AUROC needs both labels; got %zu anomalous and %zu "
                      "normal of %zu", np, nn, count);
  }
  *auroc = grad__auroc_sorted(pos, np, neg, nn);
  grad__free(pos);
  return GRAD_OK;
}

grad_status grad_eval_f1_max(const float *scores, const uint8_t *labels, size_t count, double *f1,
                             float *threshold) {
  grad_status st = check_labelled("grad_eval_f1_max", scores, labels, count, f1);
  if (st != GRAD_OK) return st;
  uint32_t *pos, *neg;
  size_t np, nn;
  st = grad__split_sorted_keys(scores, labels, count, "image score", &pos, &np, &neg, &nn);
  if (st != GRAD_OK) return grad__fail_context(st, "grad_eval_f1_max: ");
  if (np == 0) {
    grad__free(pos);
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_eval_f1_max: F1 needs at least one anomalous label (all %zu normal)",
                      count);
  }
  *f1 = grad__f1_max_sorted(pos, np, neg, nn, threshold);
  grad__free(pos);
  return GRAD_OK;
}
