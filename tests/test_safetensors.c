/*
 * Safetensors reading and writing: round trips, the reference
 * implementation's own byte-exact test vectors, F16/BF16 conversion against
 * hand-computed values, atomic saves, allocation failure and the committed
 * Python-written fixture. Corrupt files: test_safetensors_errors.c.
 */
#include <sys/stat.h>

#include <grad/tensorfile.h>

#include "half.h"
#include "safetensors.h"
#include "safetensors_testutil.h"

/* ---- Writing and reading back -------------------------------------------- */

static const int64_t conv_shape[4] = {4, 3, 2, 2};
static const int64_t empty_shape[2] = {0, 5};
static const int64_t vec_shape[1] = {7};

static void fill(float *v, size_t n, float scale) {
  for (size_t i = 0; i < n; i++) v[i] = scale * ((float)i - (float)n / 3.0f) / 7.0f;
}

static grad__st_writer *sample_writer(void) {
  float conv[48], vec[7], scalar = 3.5f;
  fill(conv, 48, 1.0f);
  conv[5] = 1e-42f; /* a float32 subnormal must survive bit for bit */
  conv[6] = -0.0f;
  conv[7] = 3.4028235e38f;
  fill(vec, 7, -2.0f);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "conv.weight", 4, conv_shape, conv), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "scalar", 0, NULL, &scalar), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "empty", 2, empty_shape, NULL), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "vec", 1, vec_shape, vec), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(w, "zeta", "last"), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(w, "alpha", "say \"hi\"\n\ttab \xc3\xa9"), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(w, "mid", "old"), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(w, "mid", "2"), GRAD_OK); /* replaces */
  return w;
}

START_TEST(round_trip_is_exact) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/round.safetensors", dir);
  grad__st_writer *w = sample_writer();
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);

  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  ck_assert_str_eq(grad__st_path(f), path);
  ck_assert_uint_eq(grad__st_count(f), 4);
  /* Offset order is insertion order; the empty tensor sits at vec's offset. */
  const char *order[] = {"conv.weight", "scalar", "empty", "vec"};
  for (size_t i = 0; i < 4; i++) ck_assert_str_eq(grad__st_at(f, i)->name, order[i]);
  ck_assert_ptr_null(grad__st_at(f, 4));
  ck_assert_uint_eq(grad__st_data_start(f) % 8, 0);
  ck_assert_uint_eq(grad__st_file_size(f), grad__st_data_start(f) + (48 + 1 + 7) * 4);

  float expect_conv[48], expect_vec[7], got[48];
  fill(expect_conv, 48, 1.0f);
  expect_conv[5] = 1e-42f, expect_conv[6] = -0.0f, expect_conv[7] = 3.4028235e38f;
  fill(expect_vec, 7, -2.0f);
  ck_assert_int_eq(grad__st_read_f32(f, "conv.weight", 4, conv_shape, true, got), GRAD_OK);
  ck_assert_mem_eq(got, expect_conv, sizeof expect_conv);
  ck_assert_int_eq(grad__st_read_f32(f, "vec", 1, vec_shape, true, got), GRAD_OK);
  ck_assert_mem_eq(got, expect_vec, sizeof expect_vec);
  const grad__st_tensor *s = grad__st_find(f, "scalar");
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(s->ndim, 0);
  ck_assert_uint_eq(s->count, 1);
  ck_assert_str_eq(s->dtype_name, "F32");
  ck_assert_int_eq(grad__st_read_f32(f, "scalar", 0, NULL, true, got), GRAD_OK);
  ck_assert(got[0] == 3.5f);
  const grad__st_tensor *e = grad__st_find(f, "empty");
  ck_assert_int_eq(e->ndim, 2);
  ck_assert_int_eq(e->shape[0], 0);
  ck_assert_int_eq(e->shape[1], 5);
  ck_assert_uint_eq(e->count, 0);
  ck_assert_uint_eq(e->nbytes, 0);
  ck_assert_int_eq(grad__st_read_f32(f, "empty", 2, empty_shape, true, NULL), GRAD_OK);
  ck_assert_ptr_null(grad__st_find(f, "nope"));

  /* Metadata comes back in file order, which the writer sorts by key. */
  ck_assert_uint_eq(grad__st_meta_count(f), 3);
  const char *key, *value;
  grad__st_meta_at(f, 0, &key, &value);
  ck_assert_str_eq(key, "alpha");
  ck_assert_str_eq(value, "say \"hi\"\n\ttab \xc3\xa9");
  grad__st_meta_at(f, 1, &key, &value);
  ck_assert_str_eq(key, "mid");
  ck_assert_str_eq(value, "2");
  grad__st_meta_at(f, 2, &key, NULL);
  ck_assert_str_eq(key, "zeta");
  ck_assert_str_eq(grad__st_meta(f, "zeta"), "last");
  ck_assert_ptr_null(grad__st_meta(f, "absent"));
  grad__st_close(f);
  grad__st_close(NULL);

  /* The header is space-padded to a multiple of 8 (reference convention). */
  size_t size;
  unsigned char *bytes = slurp(path, &size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
  ck_assert_uint_eq(n % 8, 0);
  ck_assert_int_eq(bytes[8], '{');
  grad__free(bytes);
  test_remove_tree(dir);
}
END_TEST

START_TEST(public_api_reads_the_same) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/public.safetensors", dir);
  grad__st_writer *w = sample_writer();
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);

  grad_tensorfile *tf = NULL;
  ck_assert_int_eq(grad_tensorfile_open(path, &tf), GRAD_OK);
  ck_assert_uint_eq(grad_tensorfile_count(tf), 4);
  ck_assert_str_eq(grad_tensorfile_name(tf, 0), "conv.weight");
  ck_assert_str_eq(grad_tensorfile_dtype_name(tf, 0), "F32");
  ck_assert_int_eq(grad_tensorfile_ndim(tf, 0), 4);
  ck_assert_int_eq(grad_tensorfile_dim(tf, 0, 1), 3);
  ck_assert_int_eq(grad_tensorfile_dim(tf, 0, 4), -1);
  ck_assert_uint_eq(grad_tensorfile_elements(tf, 0), 48);
  ck_assert_int_eq(grad_tensorfile_ndim(tf, 1), 0);
  ck_assert_uint_eq(grad_tensorfile_elements(tf, 1), 1);
  ck_assert_ptr_null(grad_tensorfile_name(tf, 4));
  ck_assert_int_eq(grad_tensorfile_ndim(tf, 4), -1);
  size_t index = 99;
  ck_assert_int_eq(grad_tensorfile_find(tf, "vec", &index), GRAD_OK);
  ck_assert_uint_eq(index, 3);
  ck_assert_error(grad_tensorfile_find(tf, "nope", &index), GRAD_E_MISSING, "'nope'");
  ck_assert_uint_eq(grad_tensorfile_meta_count(tf), 3);
  ck_assert_str_eq(grad_tensorfile_meta_key(tf, 1), "mid");
  ck_assert_str_eq(grad_tensorfile_meta_value(tf, 1), "2");
  ck_assert_ptr_null(grad_tensorfile_meta_key(tf, 3));
  ck_assert_str_eq(grad_tensorfile_meta_get(tf, "zeta"), "last");
  ck_assert_ptr_null(grad_tensorfile_meta_get(tf, "nope"));

  float out[48], expect[7];
  fill(expect, 7, -2.0f);
  ck_assert_int_eq(grad_tensorfile_read_f32(tf, "vec", out, 7), GRAD_OK);
  ck_assert_mem_eq(out, expect, sizeof expect);
  ck_assert_error(grad_tensorfile_read_f32(tf, "conv.weight", out, 47), GRAD_E_INVALID_ARG,
                  "48 elements but the buffer holds 47");
  ck_assert_error(grad_tensorfile_read_f32(tf, "nope", out, 48), GRAD_E_MISSING,
                  "no tensor named 'nope'");
  grad_tensorfile_free(tf);

  /* NULL handles are harmless. */
  grad_tensorfile_free(NULL);
  ck_assert_uint_eq(grad_tensorfile_count(NULL), 0);
  ck_assert_ptr_null(grad_tensorfile_name(NULL, 0));
  ck_assert_ptr_null(grad_tensorfile_meta_get(NULL, "x"));
  ck_assert_int_eq(grad_tensorfile_open(NULL, &tf), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(tf);
  ck_assert_error(grad_tensorfile_open("/nonexistent/w.safetensors", &tf), GRAD_E_IO,
                  "/nonexistent/w.safetensors: cannot open");
  test_remove_tree(dir);
}
END_TEST

/* The reference implementation's serialisation tests
 * (huggingface/safetensors, safetensors/src/tensor.rs) fix these exact bytes. */
START_TEST(writer_matches_reference_bytes) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/ref.safetensors", dir);
  size_t size;
  unsigned char *got;

  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  got = slurp(path, &size);
  static const unsigned char empty[] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ',
                                        ' ', ' ', ' ', ' '};
  ck_assert_uint_eq(size, sizeof empty);
  ck_assert_mem_eq(got, empty, sizeof empty);
  grad__free(got);

  ck_assert_int_eq(grad__st_writer_meta(w, "framework", "pt"), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  got = slurp(path, &size);
  const char *meta_header = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
  ck_assert_uint_eq(size, 8 + 40);
  ck_assert_int_eq(got[0], 40);
  ck_assert_mem_eq(got + 8, meta_header, 40);
  grad__free(got);
  grad__st_writer_free(w);

  const float data[6] = {0, 1, 2, 3, 4, 5};
  const int64_t shape[4] = {1, 1, 2, 3};
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "attn0", 4, shape, data), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  got = slurp(path, &size);
  const char *header =
      "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
  static const unsigned char floats[24] = {0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64,
                                           0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
  ck_assert_uint_eq(strlen(header), 72);
  ck_assert_uint_eq(size, 8 + 72 + 24);
  ck_assert_int_eq(got[0], 72);
  for (int i = 1; i < 8; i++) ck_assert_int_eq(got[i], 0);
  ck_assert_mem_eq(got + 8, header, 72);
  ck_assert_mem_eq(got + 80, floats, 24);
  grad__free(got);
  test_remove_tree(dir);
}
END_TEST

START_TEST(writer_rejects_bad_arguments) {
  grad__st_writer *w = NULL;
  const float one = 1.0f;
  const int64_t neg[1] = {-2}, ok[1] = {1};
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "a", 1, ok, &one), GRAD_OK);
  ck_assert_error(grad__st_writer_add(w, "a", 1, ok, &one), GRAD_E_INVALID_ARG,
                  "'a' was already added");
  ck_assert_error(grad__st_writer_add(w, "__metadata__", 1, ok, &one), GRAD_E_INVALID_ARG,
                  "reserved");
  ck_assert_error(grad__st_writer_add(w, "bad\xff", 1, ok, &one), GRAD_E_INVALID_ARG, "UTF-8");
  ck_assert_error(grad__st_writer_add(w, "n", 1, neg, &one), GRAD_E_INVALID_ARG,
                  "shape[0] is negative");
  ck_assert_error(grad__st_writer_add(w, "d", 9, NULL, &one), GRAD_E_INVALID_ARG,
                  "9 dimensions");
  ck_assert_error(grad__st_writer_add(w, "z", 1, ok, NULL), GRAD_E_INVALID_ARG, "data is NULL");
  const int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
  ck_assert_error(grad__st_writer_add(w, "h", 3, huge, &one), GRAD_E_TOO_LARGE, "overflows");
  ck_assert_error(grad__st_writer_meta(w, "k", "\xc0\x80"), GRAD_E_INVALID_ARG, "UTF-8");
  ck_assert_int_eq(grad__st_writer_meta(w, "k", NULL), GRAD_E_INVALID_ARG);
  grad__st_writer_free(w);
  grad__st_writer_free(NULL);
}
END_TEST

/* ---- F16 / BF16 ------------------------------------------------------------ */

START_TEST(half_conversion_hand_values) {
  ck_assert(grad__f16_to_f32(0x3c00) == 1.0f);
  ck_assert(grad__f16_to_f32(0xc100) == -2.5f);
  ck_assert(grad__f16_to_f32(0x7bff) == 65504.0f);
  ck_assert(grad__f16_to_f32(0x0400) == 0x1p-14f);           /* smallest normal */
  ck_assert(grad__f16_to_f32(0x0001) == 0x1p-24f);           /* smallest subnormal */
  ck_assert(grad__f16_to_f32(0x03ff) == 1023.0f * 0x1p-24f); /* largest subnormal */
  ck_assert(grad__f16_to_f32(0x8001) == -0x1p-24f);
  ck_assert(grad__f16_to_f32(0x3555) == 0x1.554p-2f);        /* 0.333251953125 */
  float z = grad__f16_to_f32(0x8000);
  ck_assert(z == 0.0f && signbit(z));
  ck_assert(isinf(grad__f16_to_f32(0x7c00)) && grad__f16_to_f32(0x7c00) > 0);
  ck_assert(isinf(grad__f16_to_f32(0xfc00)) && grad__f16_to_f32(0xfc00) < 0);
  ck_assert(isnan(grad__f16_to_f32(0x7e00)));
  ck_assert(isnan(grad__f16_to_f32(0x7c01))); /* signalling NaN stays NaN, not Inf */
  ck_assert(isnan(grad__f16_to_f32(0xfe00)) && signbit(grad__f16_to_f32(0xfe00)));

  ck_assert(grad__bf16_to_f32(0x3f80) == 1.0f);
  ck_assert(grad__bf16_to_f32(0xc020) == -2.5f);
  ck_assert(grad__bf16_to_f32(0x477f) == 65280.0f);
  ck_assert(grad__bf16_to_f32(0x0001) == 0x1p-133f); /* smallest subnormal */
  ck_assert(grad__bf16_to_f32(0x0080) == 0x1p-126f); /* smallest normal */
  ck_assert(isinf(grad__bf16_to_f32(0x7f80)) && grad__bf16_to_f32(0x7f80) > 0);
  ck_assert(isinf(grad__bf16_to_f32(0xff80)) && grad__bf16_to_f32(0xff80) < 0);
  ck_assert(isnan(grad__bf16_to_f32(0x7fc0)));
  ck_assert(isnan(grad__bf16_to_f32(0x7f81)));
}
END_TEST

/* Every F16 pattern against the definition, evaluated in double. */
START_TEST(half_conversion_all_patterns) {
  /* Asserting only on a mismatch keeps Check's per-assertion bookkeeping
   * out of the 65,536-iteration loop. */
  for (uint32_t bits = 0; bits < 0x10000; bits++) {
    int sign = bits >> 15, exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
    float got = grad__f16_to_f32((uint16_t)bits);
    bool ok;
    double expect = 0.0;
    if (exponent == 31) {
      ok = (mantissa ? isnan(got) : isinf(got)) && !signbit(got) == !sign;
    } else {
      double magnitude = exponent ? ldexp(1.0 + mantissa / 1024.0, exponent - 15)
                                  : ldexp(mantissa / 1024.0, -14);
      expect = sign ? -magnitude : magnitude;
      ok = (double)got == expect && !signbit(got) == !sign;
    }
    if (!ok) ck_abort_msg("pattern 0x%04x: %.9g, expected %.9g", bits, (double)got, expect);
  }
}
END_TEST

/* F16 and BF16 tensors in a hand-made file are converted on load. */
START_TEST(half_tensors_load_as_f32) {
  const char header[] =
      "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[12,20]}}";
  size_t size;
  unsigned char *buf = make_file(header, sizeof header - 1, -1, 20, &size);
  static const uint16_t h[6] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00, 0x7e00};
  static const uint16_t b[4] = {0x3f80, 0xc020, 0x0001, 0xff80};
  unsigned char *data = buf + 8 + sizeof header - 1;
  for (int i = 0; i < 6; i++) data[2 * i] = h[i] & 0xff, data[2 * i + 1] = h[i] >> 8;
  for (int i = 0; i < 4; i++) data[12 + 2 * i] = b[i] & 0xff, data[13 + 2 * i] = b[i] >> 8;
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open_memory(buf, size, "half.st", &f), GRAD_OK);
  ck_assert_int_eq(grad__st_find(f, "h")->dtype, GRAD__DTYPE_F16);
  ck_assert_int_eq(grad__st_find(f, "b")->dtype, GRAD__DTYPE_BF16);
  float out[6];
  const int64_t shape6[1] = {6}, shape22[2] = {2, 2};
  ck_assert_int_eq(grad__st_read_f32(f, "h", 1, shape6, false, out), GRAD_OK);
  ck_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == 65504.0f && out[3] == 0x1p-24f);
  ck_assert(isinf(out[4]) && out[4] > 0 && isnan(out[5]));
  ck_assert_error(grad__st_read_f32(f, "h", 1, shape6, true, out), GRAD_E_NUMERIC,
                  "half.st: tensor 'h' element 4 (file byte");
  ck_assert_int_eq(grad__st_read_f32(f, "b", 2, shape22, false, out), GRAD_OK);
  ck_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == 0x1p-133f);
  ck_assert(isinf(out[3]) && out[3] < 0);
  ck_assert_error(grad__st_read_f32(f, "b", 2, shape22, true, out), GRAD_E_NUMERIC,
                  "element 3 (file byte");
  grad__st_close(f);
  free(buf);
}
END_TEST

/* ---- Atomic saves -------------------------------------------------------------- */

START_TEST(save_to_unwritable_path_leaves_nothing) {
  grad__st_writer *w = sample_writer();
  ck_assert_error(grad__st_writer_save(w, "/nonexistent/x.st"), GRAD_E_IO, "/nonexistent/x.st");
  struct stat st;
  ck_assert_int_ne(stat("/nonexistent/x.st", &st), 0);
  ck_assert_int_ne(stat("/nonexistent", &st), 0);
  grad__st_writer_free(w);
}
END_TEST

START_TEST(save_replaces_existing_file_atomically) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  write_bytes(path, "old contents", 12);
  grad__st_writer *w = sample_writer();
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  ck_assert_int_eq(folder_entries(dir), 1); /* no temporary file left */
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  ck_assert_uint_eq(grad__st_count(f), 4);
  grad__st_close(f);

  /* A save that fails part-way (out of memory building the header) leaves
   * the previous file byte for byte. */
  size_t before_size, after_size;
  unsigned char *before = slurp(path, &before_size);
  ck_assert_int_eq(grad__st_writer_meta(w, "extra", "x"), GRAD_OK);
  grad__alloc_fail_after(0);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_E_NOMEM);
  grad__alloc_fail_after(-1);
  unsigned char *after = slurp(path, &after_size);
  ck_assert_uint_eq(after_size, before_size);
  ck_assert_mem_eq(after, before, before_size);
  ck_assert_int_eq(folder_entries(dir), 1);
  grad__free(before), grad__free(after);

  /* A save whose final rename fails (the target is a folder) removes its
   * temporary file and leaves the folder alone. */
  char sub[600], inside[700];
  snprintf(sub, sizeof sub, "%s/taken", dir);
  snprintf(inside, sizeof inside, "%s/keep", sub);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  write_bytes(inside, "k", 1);
  ck_assert_error(grad__st_writer_save(w, sub), GRAD_E_IO, "taken: cannot save");
  ck_assert_int_eq(folder_entries(dir), 2);
  ck_assert_int_eq(folder_entries(sub), 1);
  grad__st_writer_free(w);
  test_remove_tree(dir);
}
END_TEST

/* ---- Allocation failure ---------------------------------------------------------- */

START_TEST(allocation_failure_is_clean) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/alloc.safetensors", dir);
  grad__st_writer *w = sample_writer();
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);

  int failures = 0;
  for (long n = 0;; n++) { /* opening, by path and through the public API */
    grad__st_file *f = NULL;
    grad_tensorfile *tf = NULL;
    grad__alloc_fail_after(n);
    grad_status s = grad__st_open(path, &f);
    grad__alloc_fail_after(n);
    grad_status t = grad_tensorfile_open(path, &tf);
    grad__alloc_fail_after(-1);
    ck_assert_msg(s == GRAD_OK || s == GRAD_E_NOMEM, "open after %ld: %s", n, grad_last_error());
    ck_assert_msg(t == GRAD_OK || t == GRAD_E_NOMEM, "public open after %ld", n);
    ck_assert(s == GRAD_OK || f == NULL);
    ck_assert(t == GRAD_OK || tf == NULL);
    grad__st_close(f);
    grad_tensorfile_free(tf);
    if (s == GRAD_OK && t == GRAD_OK) break;
    failures++;
    ck_assert_int_lt(n, 1000);
  }
  ck_assert_int_gt(failures, 5);

  failures = 0;
  for (long n = 0;; n++) { /* building and saving */
    char out_path[600];
    snprintf(out_path, sizeof out_path, "%s/w%ld.safetensors", dir, n);
    float v[3] = {1, 2, 3};
    const int64_t shape[1] = {3};
    grad__st_writer *writer = NULL;
    grad__alloc_fail_after(n);
    grad_status s = grad__st_writer_create(&writer);
    for (int i = 0; s == GRAD_OK && i < 20; i++) {
      char name[16];
      snprintf(name, sizeof name, "t%d", i);
      s = grad__st_writer_add(writer, name, 1, shape, v);
      if (s == GRAD_OK) s = grad__st_writer_meta(writer, name, "value");
    }
    if (s == GRAD_OK) s = grad__st_writer_save(writer, out_path);
    grad__alloc_fail_after(-1);
    ck_assert_msg(s == GRAD_OK || s == GRAD_E_NOMEM, "writer after %ld: %s", n, grad_last_error());
    grad__st_writer_free(writer);
    struct stat st;
    ck_assert_int_eq(stat(out_path, &st) == 0, s == GRAD_OK); /* no partial file */
    if (s == GRAD_OK) break;
    failures++;
    ck_assert_int_lt(n, 1000);
  }
  ck_assert_int_gt(failures, 20);
  test_remove_tree(dir);
}
END_TEST

/* ---- The committed fixture --------------------------------------------------------- */

/* tests/fixtures/safetensors/small.safetensors is written by
 * tests/make_safetensors_fixtures.py (an independent Python writer). */
START_TEST(python_fixture_reads_back) {
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(test_fixture("safetensors/small.safetensors"), &f), GRAD_OK);
  ck_assert_uint_eq(grad__st_count(f), 4);
  ck_assert_str_eq(grad__st_meta(f, "format"), "libgrad-test");
  float w[18], b[2], h[3], bf[2];
  const int64_t ws[4] = {2, 1, 3, 3}, bs[1] = {2}, hs[1] = {3}, bfs[2] = {1, 2};
  ck_assert_int_eq(grad__st_read_f32(f, "conv1.weight", 4, ws, true, w), GRAD_OK);
  for (int i = 0; i < 18; i++) ck_assert(w[i] == 0.25f * (float)i - 2.0f);
  ck_assert_int_eq(grad__st_read_f32(f, "conv1.bias", 1, bs, true, b), GRAD_OK);
  ck_assert(b[0] == 0.5f && b[1] == -1.5f);
  ck_assert_int_eq(grad__st_read_f32(f, "head.scale", 1, hs, true, h), GRAD_OK);
  ck_assert(h[0] == 1.0f && h[1] == -2.5f && h[2] == 65504.0f);
  ck_assert_int_eq(grad__st_read_f32(f, "head.shift", 2, bfs, true, bf), GRAD_OK);
  ck_assert(bf[0] == 1.0f && bf[1] == -2.5f);
  grad__st_close(f);
}
END_TEST

/* With GRAD_ST_SAMPLE_OUT set, saves the round-trip writer there so that
 * `make_safetensors_fixtures.py check FILE` can read a C-written file. */
START_TEST(sample_for_python_check) {
  const char *out = getenv("GRAD_ST_SAMPLE_OUT");
  if (!out) return;
  grad__st_writer *w = sample_writer();
  ck_assert_int_eq(grad__st_writer_save(w, out), GRAD_OK);
  grad__st_writer_free(w);
}
END_TEST

int main(void) {
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("safetensors");
  tcase_add_test(tc, round_trip_is_exact);
  tcase_add_test(tc, public_api_reads_the_same);
  tcase_add_test(tc, writer_matches_reference_bytes);
  tcase_add_test(tc, writer_rejects_bad_arguments);
  tcase_add_test(tc, half_conversion_hand_values);
  tcase_add_test(tc, half_conversion_all_patterns);
  tcase_add_test(tc, half_tensors_load_as_f32);
  tcase_add_test(tc, save_to_unwritable_path_leaves_nothing);
  tcase_add_test(tc, save_replaces_existing_file_atomically);
  tcase_add_test(tc, allocation_failure_is_clean);
  tcase_add_test(tc, python_fixture_reads_back);
  tcase_add_test(tc, sample_for_python_check);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
