/* Status codes, error messages, version, allocation failure, workspace. */
#include <grad/grad.h>

#include "core.h"
#include "rng.h"
#include "testutil.h"

START_TEST(status_names_are_stable) {
  ck_assert_str_eq(grad_status_name(GRAD_OK), "GRAD_OK");
  ck_assert_str_eq(grad_status_name(GRAD_E_FORMAT), "GRAD_E_FORMAT");
  ck_assert_str_eq(grad_status_name(GRAD_E_INTERNAL), "GRAD_E_INTERNAL");
  ck_assert_str_eq(grad_status_name((grad_status)999), "GRAD_E_UNKNOWN");
  ck_assert_str_eq(grad_status_describe(GRAD_E_NOMEM), "out of memory");
  ck_assert_int_eq(GRAD_E_VERSION, 10);
}
END_TEST

START_TEST(error_message_is_kept_and_prefixed) {
  ck_assert_int_eq(grad__fail(GRAD_E_IO, "cannot open %s", "x.png"), GRAD_E_IO);
  ck_assert_str_eq(grad_last_error(), "cannot open x.png");
  grad__fail_context(GRAD_E_IO, "loading %s", "model");
  ck_assert_str_eq(grad_last_error(), "loading model: cannot open x.png");
}
END_TEST

START_TEST(version_matches_header) {
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", GRAD_VERSION_MAJOR, GRAD_VERSION_MINOR,
           GRAD_VERSION_PATCH);
  ck_assert_str_eq(grad_version_string(), expect);
  ck_assert_int_eq(grad_version_number(), GRAD_VERSION_NUMBER);
}
END_TEST

START_TEST(allocation_failure_is_injected) {
  grad_workspace *ws = NULL;
  grad__alloc_fail_after(0);
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_E_NOMEM);
  ck_assert_ptr_null(ws);
  grad__alloc_fail_after(-1);
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  grad_workspace_free(ws);
}
END_TEST

START_TEST(workspace_settles_to_one_block) {
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  for (int round = 0; round < 3; round++) {
    grad__ws_reset(ws);
    float *a = grad__ws_floats(ws, 1000);
    size_t mark = grad__ws_mark(ws);
    float *b = grad__ws_floats(ws, 5000);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq((uintptr_t)a % 64, 0);
    ck_assert_uint_eq((uintptr_t)b % 64, 0);
    a[999] = 1.0f;
    b[4999] = 2.0f;  /* both regions are writable and disjoint */
    ck_assert(a + 1000 <= b || b + 5000 <= a);
    grad__ws_release(ws, mark);
    float *c = grad__ws_floats(ws, 5000);
    ck_assert_ptr_nonnull(c);
    if (round > 0) ck_assert_ptr_eq(b, c); /* released space is reused */
  }
  /* After the first round the arena is one block of the peak size. */
  ck_assert_uint_ge(grad_workspace_bytes(ws), 6000 * sizeof(float));
  grad__alloc_fail_after(0); /* no allocation may happen any more */
  grad__ws_reset(ws);
  ck_assert_ptr_nonnull(grad__ws_floats(ws, 6000));
  grad__alloc_fail_after(-1);
  grad_workspace_free(ws);
  grad_workspace_free(NULL);
}
END_TEST

/* The generator's first outputs for seed 0, computed by hand from the
 * published splitmix64 and xoshiro256** definitions in Python. */
START_TEST(rng_is_reproducible_and_distributed) {
  grad__rng a, b;
  grad__rng_seed(&a, 0);
  ck_assert_uint_eq(grad__rng_u64(&a), 0x99ec5f36cb75f2b4ull);
  ck_assert_uint_eq(grad__rng_u64(&a), 0xbf6e1f784956452aull);
  ck_assert_uint_eq(grad__rng_u64(&a), 0x1a5f849d4933e6e0ull);
  grad__rng_seed(&a, 42);
  grad__rng_seed(&b, 42);
  for (int i = 0; i < 100; i++) ck_assert_uint_eq(grad__rng_u64(&a), grad__rng_u64(&b));
  grad__rng_seed(&a, 7);
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    double x = grad__rng_normal(&a);
    sum += x;
    sum2 += x * x;
  }
  ck_assert_double_le(fabs(sum / n), 0.01);
  ck_assert_double_le(fabs(sum2 / n - 1.0), 0.02);
  int hist[5] = {0};
  for (int i = 0; i < 50000; i++) hist[grad__rng_below(&a, 5)]++;
  for (int k = 0; k < 5; k++) ck_assert_int_le(abs(hist[k] - 10000), 400);
  int items[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, seen = 0;
  grad__rng_shuffle(&a, items, 10);
  for (int k = 0; k < 10; k++) seen |= 1 << items[k];
  ck_assert_int_eq(seen, 0x3ff); /* a permutation */
}
END_TEST

int main(void) {
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, status_names_are_stable);
  tcase_add_test(tc, error_message_is_kept_and_prefixed);
  tcase_add_test(tc, version_matches_header);
  tcase_add_test(tc, allocation_failure_is_injected);
  tcase_add_test(tc, workspace_settles_to_one_block);
  tcase_add_test(tc, rng_is_reproducible_and_distributed);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
