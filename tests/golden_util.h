/* Golden fixtures (safetensors files made by the tests/make_*_golden.py
 * scripts): opening one, reading a tensor, comparing against it. For the
 * Check test programs that read them through the internal reader. */
#ifndef GRAD_GOLDEN_UTIL_H
#define GRAD_GOLDEN_UTIL_H

#include "safetensors.h"
#include "testutil.h"

/* The fixture tests/fixtures/NAME, opened (the test fails if it cannot be). */
static inline grad__st_file *golden_file_open(const char *name) {
  grad__st_file *f = NULL;
  grad_status st = grad__st_open(test_fixture(name), &f);
  ck_assert_msg(st == GRAD_OK, "%s: %s", name, grad_last_error());
  return f;
}

/* A whole tensor of f, malloc'd; its element count in *count (may be NULL). */
static inline float *golden_tensor(const grad__st_file *f, const char *name, size_t *count) {
  const grad__st_tensor *t = grad__st_find(f, name);
  ck_assert_msg(t != NULL, "golden tensor %s missing", name);
  float *data = malloc(sizeof(float) * (t->count ? t->count : 1));
  ck_assert_int_eq(grad__st_read_f32(f, name, 0, NULL, true, data), GRAD_OK);
  if (count) *count = t->count;
  return data;
}

/* got (count floats) against the golden tensor name: max|diff| <= tol *
 * max|ref|; prints the error reached. */
static inline void golden_expect(const grad__st_file *f, const char *name, const float *got,
                                 size_t count, double tol) {
  size_t n = 0;
  float *ref = golden_tensor(f, name, &n);
  ck_assert_uint_eq(n, count);
  double max_ref;
  double diff = test_max_abs_diff(got, ref, n, &max_ref);
  fprintf(stderr, "  %-16s max|diff| / max|ref| = %.2e\n", name, diff / max_ref);
  ck_assert_close_rel(got, ref, n, tol);
  free(ref);
}

#endif /* GRAD_GOLDEN_UTIL_H */
