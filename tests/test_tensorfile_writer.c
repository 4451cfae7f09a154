/*
 * The public safetensors writer: what it saves reads back through the
 * public reader (names, shapes, values, metadata), the layout calls agree
 * with the file on disk, and bad arguments are refused. Links the shared
 * library only.
 */
#include <grad/grad.h>
#include <sys/stat.h>

#include "testutil.h"

START_TEST(written_file_reads_back) {
  char path[600];
  snprintf(path, sizeof path, "%s/writer.safetensors", test_tmpdir());
  grad_tensorfile_writer *w = NULL;
  ck_assert_int_eq(grad_tensorfile_writer_create(&w), GRAD_OK);
  const float map[6] = {0.5f, -1.0f, 2.25f, 3.0f, -0.125f, 7.0f};
  const int64_t shape[2] = {2, 3};
  ck_assert_int_eq(grad_tensorfile_writer_add_f32(w, "map", 2, shape, map), GRAD_OK);
  ck_assert_int_eq(grad_tensorfile_writer_set_meta(w, "image", "a.png"), GRAD_OK);
  ck_assert_int_eq(grad_tensorfile_writer_set_meta(w, "image", "b.png"), GRAD_OK);
  ck_assert_int_eq(grad_tensorfile_writer_add_f32(w, "map", 2, shape, map), GRAD_E_INVALID_ARG);
  const int64_t negative[1] = {-1};
  ck_assert_int_eq(grad_tensorfile_writer_add_f32(w, "bad", 1, negative, map), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_tensorfile_writer_add_f32(w, "bad", 9, shape, map), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_tensorfile_writer_save(w, path), GRAD_OK);
  grad_tensorfile_writer_free(w);

  grad_tensorfile *tf = NULL;
  ck_assert_msg(grad_tensorfile_open(path, &tf) == GRAD_OK, "%s", grad_last_error());
  ck_assert_uint_eq(grad_tensorfile_count(tf), 1);
  ck_assert_str_eq(grad_tensorfile_name(tf, 0), "map");
  ck_assert_int_eq(grad_tensorfile_ndim(tf, 0), 2);
  ck_assert_int_eq(grad_tensorfile_dim(tf, 0, 0), 2);
  ck_assert_int_eq(grad_tensorfile_dim(tf, 0, 1), 3);
  ck_assert_str_eq(grad_tensorfile_meta_get(tf, "image"), "b.png");
  float back[6] = {0};
  ck_assert_int_eq(grad_tensorfile_read_f32(tf, "map", back, 6), GRAD_OK);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(back[i], map[i]);

  /* Layout: 8-byte length + header + 24 data bytes is the file's size. */
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_uint_eq(grad_tensorfile_bytes(tf), (size_t)st.st_size);
  ck_assert_uint_eq(grad_tensorfile_tensor_bytes(tf, 0), 6 * sizeof(float));
  ck_assert_uint_eq(8 + grad_tensorfile_header_bytes(tf) + 24, (size_t)st.st_size);
  ck_assert_uint_eq(grad_tensorfile_tensor_bytes(tf, 1), 0);
  ck_assert_uint_eq(grad_tensorfile_bytes(NULL), 0);
  grad_tensorfile_free(tf);

  ck_assert_int_eq(grad_tensorfile_writer_create(NULL), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_tensorfile_writer_save(NULL, path), GRAD_E_INVALID_ARG);
  grad_tensorfile_writer_free(NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tensorfile_writer");
  TCase *tc = tcase_create("writer");
  tcase_add_test(tc, written_file_reads_back);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
