/* Folder listing, the MVTec layout and grad_categories_find: a made-up tree, real data. */
#include <sys/stat.h>

#include <grad/eval.h>

#include "dataset.h"
#include "testutil.h"

static void touch(const char *dir, const char *name) {
  char path[1100];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
}

static void mkdirf(const char *fmt, const char *root) {
  char path[512];
  snprintf(path, sizeof path, fmt, root);
  ck_assert_int_eq(mkdir(path, 0755), 0);
}

START_TEST(plain_folder_lists_images_sorted) {
  const char *dir = test_tmpdir();
  touch(dir, "b.PNG");
  touch(dir, "a.jpg");
  touch(dir, "notes.txt");
  touch(dir, ".hidden.png");
  touch(dir, "c.jpeg");
  grad__path_list list = {0};
  ck_assert_int_eq(grad__training_images(dir, &list), GRAD_OK);
  ck_assert_uint_eq(list.count, 3);
  ck_assert_ptr_nonnull(strstr(list.paths[0], "/a.jpg"));
  ck_assert_ptr_nonnull(strstr(list.paths[1], "/b.PNG"));
  ck_assert_ptr_nonnull(strstr(list.paths[2], "/c.jpeg"));
  ck_assert(!grad__is_category(dir));
  grad__path_list_free(&list);
}
END_TEST

START_TEST(empty_and_missing_folders_are_errors) {
  grad__path_list list = {0};
  ck_assert_int_eq(grad__training_images(test_tmpdir(), &list), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "no PNG or JPEG"));
  ck_assert_int_eq(grad__training_images("/nonexistent/folder", &list), GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/folder"));
  grad__path_list_free(&list);
}
END_TEST

START_TEST(category_layout_pairs_images_and_masks) {
  const char *root = test_tmpdir();
  mkdirf("%s/train", root);
  mkdirf("%s/train/good", root);
  mkdirf("%s/test", root);
  mkdirf("%s/test/good", root);
  mkdirf("%s/test/crack", root);
  mkdirf("%s/ground_truth", root);
  mkdirf("%s/ground_truth/crack", root);
  char sub[1024];
  snprintf(sub, sizeof sub, "%s/train/good", root);
  touch(sub, "000.png");
  snprintf(sub, sizeof sub, "%s/test/good", root);
  touch(sub, "001.png");
  snprintf(sub, sizeof sub, "%s/test/crack", root);
  touch(sub, "002.jpg");
  snprintf(sub, sizeof sub, "%s/ground_truth/crack", root);
  touch(sub, "002_mask.png");

  ck_assert(grad__is_category(root));
  grad__path_list train = {0};
  ck_assert_int_eq(grad__training_images(root, &train), GRAD_OK);
  ck_assert_uint_eq(train.count, 1);
  ck_assert_ptr_nonnull(strstr(train.paths[0], "train/good/000.png"));
  grad__path_list_free(&train);

  grad__test_set set;
  ck_assert_int_eq(grad__category_test_set(root, &set), GRAD_OK);
  ck_assert_uint_eq(set.count, 2);
  ck_assert_str_eq(set.items[0].defect, "crack"); /* defects sorted by name */
  ck_assert_ptr_nonnull(strstr(set.items[0].mask, "ground_truth/crack/002_mask.png"));
  ck_assert_str_eq(set.items[1].defect, "good");
  ck_assert_ptr_null(set.items[1].mask);
  grad__test_set_free(&set);

  /* A defect image without its mask is named in the error. */
  touch(sub, "../../test/crack/003.png");
  ck_assert_int_eq(grad__category_test_set(root, &set), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "003.png"));
}
END_TEST

/* The public finder: a root of two categories (one with test/ only, one
 * with train/good only), a plain folder and a hidden one; then a category
 * as the root; then a root with none and one that does not exist. */
START_TEST(categories_are_found_under_a_root_or_as_the_root) {
  const char *root = test_tmpdir();
  mkdirf("%s/zipper", root);
  mkdirf("%s/zipper/test", root);
  mkdirf("%s/bottle", root);
  mkdirf("%s/bottle/train", root);
  mkdirf("%s/bottle/train/good", root);
  mkdirf("%s/notes", root);
  mkdirf("%s/.cache", root);
  mkdirf("%s/.cache/test", root);
  touch(root, "readme.txt");
  char **paths = NULL;
  size_t count = 0;
  ck_assert_int_eq(grad_categories_find(root, &paths, &count), GRAD_OK);
  ck_assert_uint_eq(count, 2);
  char want[1100];
  snprintf(want, sizeof want, "%s/bottle", root);
  ck_assert_str_eq(paths[0], want);
  snprintf(want, sizeof want, "%s/zipper", root);
  ck_assert_str_eq(paths[1], want);
  ck_assert_ptr_null(paths[2]);
  grad_categories_free(paths);

  ck_assert_int_eq(grad_categories_find(want, &paths, &count), GRAD_OK);
  ck_assert_uint_eq(count, 1);
  ck_assert_str_eq(paths[0], want);
  grad_categories_free(paths);

  snprintf(want, sizeof want, "%s/notes", root);
  ck_assert_int_eq(grad_categories_find(want, &paths, &count), GRAD_E_MISSING);
  ck_assert_ptr_null(paths);
  ck_assert_uint_eq(count, 0);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), want));
  ck_assert_int_eq(grad_categories_find("/nonexistent/root", &paths, &count), GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/root"));
  ck_assert_int_eq(grad_categories_find(NULL, &paths, &count), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_categories_find(root, NULL, &count), GRAD_E_INVALID_ARG);
  grad_categories_free(NULL);
}
END_TEST

START_TEST(real_categories_have_the_documented_counts) {
  TEST_SKIP_WITHOUT_SHARED_DATA(data);
  char category[1024];
  snprintf(category, sizeof category, "%s/magnetic_tile", data);
  grad__path_list train = {0};
  ck_assert_int_eq(grad__training_images(category, &train), GRAD_OK);
  ck_assert_uint_eq(train.count, 385); /* data/real/SOURCES.md */
  grad__path_list_free(&train);
  grad__test_set set;
  ck_assert_int_eq(grad__category_test_set(category, &set), GRAD_OK);
  ck_assert_uint_eq(set.count, 93 + 59 + 43 + 30 + 18 + 52);
  size_t masks = 0;
  for (size_t i = 0; i < set.count; i++) masks += set.items[i].mask != NULL;
  ck_assert_uint_eq(masks, 202);
  grad__test_set_free(&set);
}
END_TEST

int main(void) {
  Suite *s = suite_create("dataset");
  TCase *tc = tcase_create("dataset");
  tcase_add_test(tc, plain_folder_lists_images_sorted);
  tcase_add_test(tc, empty_and_missing_folders_are_errors);
  tcase_add_test(tc, category_layout_pairs_images_and_masks);
  tcase_add_test(tc, categories_are_found_under_a_root_or_as_the_root);
  tcase_add_test(tc, real_categories_have_the_documented_counts);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
