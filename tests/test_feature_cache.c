/* The feature cache, in memory and spilled to an unlinked mapped file. */
#include <dirent.h>
#include <unistd.h>

#include "feature_cache.h"
#include "testutil.h"

enum { N = 5, C = 3, H = 4, W = 6, IMAGE = C * H * W };

static int entries_in(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) count++;
  closedir(d);
  return count;
}

/* Fill, read back, gather in a shuffled order: the same either way. */
static void exercise(grad__feature_cache *cache) {
  ck_assert_int_eq(grad__feature_cache_count(cache), N);
  ck_assert_int_eq(grad__feature_cache_channels(cache), C);
  ck_assert_int_eq(grad__feature_cache_height(cache), H);
  ck_assert_int_eq(grad__feature_cache_width(cache), W);
  ck_assert_uint_eq(grad__feature_cache_bytes(cache), (size_t)N * IMAGE * 4);
  for (int i = 0; i < N; i++) {
    float *img = grad__feature_cache_image(cache, i);
    ck_assert_ptr_nonnull(img);
    for (int k = 0; k < IMAGE; k++) ck_assert(img[k] == 0.0f); /* starts zeroed */
    for (int k = 0; k < IMAGE; k++) img[k] = (float)(1000 * i + k);
  }
  ck_assert_ptr_null(grad__feature_cache_image(cache, N));
  ck_assert_ptr_null(grad__feature_cache_image(cache, -1));
  int order[4] = {3, 0, 4, 3};
  float out[4 * IMAGE];
  ck_assert_int_eq(grad__feature_cache_gather(cache, order, 4, out), GRAD_OK);
  for (int j = 0; j < 4; j++)
    for (int k = 0; k < IMAGE; k++) ck_assert(out[j * IMAGE + k] == (float)(1000 * order[j] + k));
  int bad[2] = {1, N};
  ck_assert_int_eq(grad__feature_cache_gather(cache, bad, 2, out), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "image 5 of 5"));
}

START_TEST(in_memory_under_the_limit) {
  grad__feature_cache *cache = NULL;
  ck_assert_int_eq(grad__feature_cache_create(N, C, H, W, 0, NULL, &cache), GRAD_OK);
  ck_assert(!grad__feature_cache_spilled(cache));
  exercise(cache);
  grad__feature_cache_free(cache);
  /* Exactly at the limit still fits. */
  ck_assert_int_eq(grad__feature_cache_create(N, C, H, W, (size_t)N * IMAGE * 4, NULL, &cache),
                   GRAD_OK);
  ck_assert(!grad__feature_cache_spilled(cache));
  grad__feature_cache_free(cache);
}
END_TEST

START_TEST(spilled_over_the_limit) {
  const char *dir = test_tmpdir();
  grad__feature_cache *cache = NULL;
  ck_assert_int_eq(grad__feature_cache_create(N, C, H, W, (size_t)N * IMAGE * 4 - 1, dir, &cache),
                   GRAD_OK);
  ck_assert(grad__feature_cache_spilled(cache));
  ck_assert_int_eq(entries_in(dir), 0); /* unlinked at once: nothing to clean up */
  exercise(cache);
  grad__feature_cache_free(cache);
  rmdir(dir);
}
END_TEST

START_TEST(errors_are_reported) {
  grad__feature_cache *cache = (grad__feature_cache *)&cache;
  ck_assert_int_eq(grad__feature_cache_create(0, C, H, W, 0, NULL, &cache), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(cache);
  ck_assert_int_eq(grad__feature_cache_create(N, C, H, W, 1, "/nonexistent/grad-dir", &cache),
                   GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/grad-dir"));
  ck_assert_int_eq(grad__feature_cache_create(1 << 30, 1 << 30, 1 << 30, 1 << 30, 0, NULL, &cache),
                   GRAD_E_TOO_LARGE);
  grad__alloc_fail_after(1); /* the struct succeeds, the data fails */
  ck_assert_int_eq(grad__feature_cache_create(N, C, H, W, 0, NULL, &cache), GRAD_E_NOMEM);
  grad__alloc_fail_after(-1);
  ck_assert_ptr_null(cache);
  grad__feature_cache_free(NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("feature_cache");
  TCase *tc = tcase_create("feature_cache");
  tcase_add_test(tc, in_memory_under_the_limit);
  tcase_add_test(tc, spilled_over_the_limit);
  tcase_add_test(tc, errors_are_reported);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
