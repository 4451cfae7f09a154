/*
 * Safetensors validation: golden error cases on hand-made corrupt files
 * (exact status and message), valid corner cases that must be accepted,
 * and the checks of grad__st_read_f32.
 */
#include <sys/mman.h>

#include <grad/tensorfile.h>

#include "safetensors.h"
#include "safetensors_testutil.h"

/* ---- Golden error cases ------------------------------------------------------ */

typedef struct bad_case {
  const char *what;
  const char *header;
  size_t header_len;  /* 0: strlen(header) */
  long long declared; /* -1: the real header length */
  size_t data_bytes;
  grad_status status;
  const char *message;
} bad_case;

static const bad_case bad_cases[] = {
  {"header length larger than file", "{}", 0, 1000, 10, GRAD_E_FORMAT,
   "header length 1000 at byte offset 0 runs past the end of the 20-byte file"},
  {"header length 0", "{}", 0, 0, 0, GRAD_E_FORMAT,
   "header length 0 at byte offset 0 is below the minimum"},
  {"huge header length", "{}", 0, 0x7fffffffffffffffLL, 0, GRAD_E_FORMAT,
   "runs past the end of the 10-byte file"},
  {"truncated data", "{" T("w", "F32", "[6]", 0, 24) "}", 0, -1, 20, GRAD_E_FORMAT,
   "tensor 'w': field data_offsets [0, 24] runs past the end of the 20-byte data section"},
  {"invalid JSON", "{\"w\":{\"dtype\":\"F32\",", 0, -1, 0, GRAD_E_FORMAT,
   "invalid JSON header at byte offset"},
  {"trailing garbage after the JSON", "{} x", 0, -1, 0, GRAD_E_FORMAT, "invalid JSON header"},
  {"duplicate key", "{" T("w", "F32", "[1]", 0, 4) "," T("w", "F32", "[1]", 4, 8) "}", 0, -1, 8,
   GRAD_E_FORMAT, "duplicate"},
  {"overlapping offsets", "{" T("a", "F32", "[4]", 0, 16) "," T("b", "F32", "[4]", 8, 24) "}", 0,
   -1, 24, GRAD_E_FORMAT, "tensor 'b': field data_offsets [8, 24] overlaps tensor 'a'"},
  {"gap between tensors", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 12, 20) "}", 0,
   -1, 20, GRAD_E_FORMAT, "gap in the data section: data offsets 8 to 12"},
  {"bytes after the last tensor", "{" T("a", "F32", "[2]", 0, 8) "}", 0, -1, 12, GRAD_E_FORMAT,
   "data offsets 8 to 12 (file bytes"},
  {"offsets past the end", "{" T("a", "F32", "[2]", 100, 108) "}", 0, -1, 8, GRAD_E_FORMAT,
   "tensor 'a': field data_offsets [100, 108] runs past the end"},
  {"begin after end", "{" T("a", "F32", "[0]", 8, 0) "}", 0, -1, 8, GRAD_E_FORMAT,
   "field data_offsets [8, 0] begins after it ends"},
  {"negative offset", "{" T("a", "F32", "[0]", -4, 0) "}", 0, -1, 0, GRAD_E_FORMAT,
   "field data_offsets[0] is negative"},
  {"offsets not a pair", "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0]}}", 0, -1,
   0, GRAD_E_FORMAT, "tensor 'a': field data_offsets is not [begin, end]"},
  {"shape/offset size mismatch", "{" T("a", "F32", "[3]", 0, 8) "}", 0, -1, 8, GRAD_E_FORMAT,
   "holds 8 bytes but dtype F32 with shape [3] needs 12"},
  {"negative dimension", "{" T("a", "F32", "[2,-1]", 0, 0) "}", 0, -1, 0, GRAD_E_FORMAT,
   "tensor 'a': field shape[1] is negative (-1)"},
  {"fractional dimension", "{" T("a", "F32", "[2.5]", 0, 0) "}", 0, -1, 0, GRAD_E_FORMAT,
   "field shape[0] is not an integer"},
  {"shape not an array", "{" T("a", "F32", "4", 0, 16) "}", 0, -1, 16, GRAD_E_FORMAT,
   "field shape is not an array"},
  {"too many dimensions", "{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 0, -1, 4,
   GRAD_E_TOO_LARGE, "field shape has 9 dimensions"},
  {"unknown dtype", "{" T("a", "F33", "[1]", 0, 4) "}", 0, -1, 4, GRAD_E_UNSUPPORTED,
   "tensor 'a': field dtype: unknown dtype 'F33'"},
  {"sub-byte dtype", "{" T("a", "F4", "[2]", 0, 1) "}", 0, -1, 1, GRAD_E_UNSUPPORTED,
   "sub-byte dtype 'F4'"},
  {"dtype not a string", "{\"a\":{\"dtype\":7,\"shape\":[],\"data_offsets\":[0,4]}}", 0, -1, 4,
   GRAD_E_FORMAT, "field dtype is not a string"},
  {"huge shape product overflow",
   "{" T("a", "F32", "[4294967296,4294967296,4]", 0, 0) "}", 0, -1, 0, GRAD_E_FORMAT,
   "tensor 'a': field shape: the element count overflows at shape[1]"},
  {"byte size overflow", "{" T("a", "F64", "[4611686018427387904]", 0, 0) "}", 0, -1, 0,
   GRAD_E_FORMAT, "the byte size overflows"},
  {"metadata non-string", "{\"__metadata__\":{\"epochs\":10}}", 0, -1, 0, GRAD_E_FORMAT,
   "__metadata__ entry 'epochs': value is not a string"},
  {"metadata not an object", "{\"__metadata__\":[]}", 0, -1, 0, GRAD_E_FORMAT,
   "field __metadata__ is not an object"},
  {"NUL in header", "{\"a\0\":1}", 8, -1, 0, GRAD_E_FORMAT,
   "NUL byte in the JSON header at byte offset 11"},
  {"escaped NUL in a key", "{\"a\\u0000b\":{}}", 0, -1, 0, GRAD_E_FORMAT, "invalid JSON header"},
  {"invalid UTF-8", "{\"\xff\":{}}", 0, -1, 0, GRAD_E_FORMAT, "invalid JSON header"},
  {"top level not an object", "[1, 2]", 0, -1, 0, GRAD_E_FORMAT,
   "the JSON header at byte offset 8 is not an object"},
  {"entry not an object", "{\"a\":5}", 0, -1, 0, GRAD_E_FORMAT, "tensor 'a': entry is not an object"},
  {"unexpected field",
   "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"x\":1}}", 0, -1, 4,
   GRAD_E_FORMAT, "tensor 'a': unexpected field 'x'"},
  {"missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}", 0, -1, 4, GRAD_E_FORMAT,
   "tensor 'a': missing field data_offsets"},
};

START_TEST(corrupt_file_is_rejected) {
  const bad_case *c = &bad_cases[_i];
  size_t len = c->header_len ? c->header_len : strlen(c->header);
  size_t size;
  unsigned char *buf = make_file(c->header, len, c->declared, c->data_bytes, &size);
  grad__st_file *f = (grad__st_file *)&size; /* must be reset to NULL */
  grad_status s = grad__st_open_memory(buf, size, "case.st", &f);
  ck_assert_msg(s == c->status, "%s: status %s, expected %s (%s)", c->what, grad_status_name(s),
                grad_status_name(c->status), grad_last_error());
  ck_assert_msg(strstr(grad_last_error(), c->message) != NULL, "%s: message '%s' lacks '%s'",
                c->what, grad_last_error(), c->message);
  ck_assert_msg(!strncmp(grad_last_error(), "case.st: ", 9), "%s: '%s' does not name the file",
                c->what, grad_last_error());
  ck_assert_ptr_null(f);
  free(buf);
}
END_TEST

START_TEST(short_and_oversized_headers) {
  grad__st_file *f = NULL;
  const unsigned char tiny[5] = {2, 0, 0, 0, 0};
  ck_assert_error(grad__st_open_memory(tiny, sizeof tiny, "tiny.st", &f), GRAD_E_FORMAT,
                  "tiny.st: 5 bytes is too short for the 8-byte header length");
  ck_assert_error(grad__st_open_memory(NULL, 0, NULL, &f), GRAD_E_FORMAT, "<memory>: 0 bytes");
  /* A header over the 100 MB cap is refused before it is read: the
   * anonymous mapping is never touched beyond its first page. */
  size_t size = 8 + 100000001 + 8;
  unsigned char *big = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(big, MAP_FAILED);
  uint64_t n = 100000001;
  for (int i = 0; i < 8; i++) big[i] = (unsigned char)(n >> (8 * i));
  ck_assert_error(grad__st_open_memory(big, size, "big.st", &f), GRAD_E_TOO_LARGE,
                  "big.st: header length 100000001 at byte offset 0 is more than the limit");
  munmap(big, size);
  /* The empty file on disk, and a folder. */
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/empty.safetensors", dir);
  write_bytes(path, "", 0);
  ck_assert_error(grad__st_open(path, &f), GRAD_E_FORMAT, "empty.safetensors: 0 bytes");
  ck_assert_error(grad__st_open(dir, &f), GRAD_E_IO, "not a regular file");
  test_remove_tree(dir);
}
END_TEST

/* A corrupt file on disk: the message names its path. */
START_TEST(corrupt_file_on_disk_names_path) {
  const char header[] = "{" T("a", "F32", "[4]", 0, 16) "," T("b", "F32", "[4]", 8, 24) "}";
  size_t size;
  unsigned char *buf = make_file(header, sizeof header - 1, -1, 24, &size);
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/overlap.safetensors", dir);
  write_bytes(path, buf, size);
  free(buf);
  grad__st_file *f = NULL;
  char expect[600];
  snprintf(expect, sizeof expect, "%s: tensor 'b': field data_offsets [8, 24] overlaps", path);
  ck_assert_error(grad__st_open(path, &f), GRAD_E_FORMAT, expect);
  ck_assert_ptr_null(f);
  grad_tensorfile *tf = NULL;
  ck_assert_error(grad_tensorfile_open(path, &tf), GRAD_E_FORMAT, expect);
  ck_assert_ptr_null(tf);
  test_remove_tree(dir);
}
END_TEST

/* Valid corner cases the reader must accept. */
START_TEST(valid_corner_cases_are_accepted) {
  grad__st_file *f = NULL;
  size_t size;
  /* Tensors listed out of offset order, whitespace around the JSON, an
   * empty tensor at the very end, and a listed-only dtype. */
  const char header[] = "  {" T("b", "F32", "[1]", 4, 8) ", " T("z", "F32", "[3,0]", 10, 10)
                        "," T("a", "I16", "[2]", 0, 4) "," T("c", "U8", "[2]", 8, 10) "}  ";
  unsigned char *buf = make_file(header, sizeof header - 1, -1, 10, &size);
  ck_assert_int_eq(grad__st_open_memory(buf, size, "ok.st", &f), GRAD_OK);
  ck_assert_uint_eq(grad__st_count(f), 4);
  ck_assert_str_eq(grad__st_at(f, 0)->name, "a");
  ck_assert_str_eq(grad__st_at(f, 3)->name, "z");
  ck_assert_int_eq(grad__st_find(f, "a")->dtype, GRAD__DTYPE_OTHER);
  ck_assert_str_eq(grad__st_find(f, "a")->dtype_name, "I16");
  ck_assert_uint_eq(grad__st_find(f, "a")->offset, 8 + sizeof header - 1);
  ck_assert_uint_eq(grad__st_meta_count(f), 0);
  float out[2];
  ck_assert_error(grad__st_read_f32(f, "a", 1, (int64_t[]){2}, false, out), GRAD_E_UNSUPPORTED,
                  "ok.st: tensor 'a' has dtype I16; only F32, F16 and BF16");
  grad__st_close(f);
  free(buf);
  /* The smallest file: "{}" and nothing else. */
  buf = make_file("{}", 2, -1, 0, &size);
  ck_assert_int_eq(grad__st_open_memory(buf, size, "min.st", &f), GRAD_OK);
  ck_assert_uint_eq(grad__st_count(f), 0);
  ck_assert_ptr_null(grad__st_find(f, "a"));
  grad__st_close(f);
  free(buf);
}
END_TEST

/* ---- grad__st_read_f32 errors ------------------------------------------------- */

START_TEST(read_f32_checks_shape_name_and_values) {
  const char header[] = "{" T("w", "F32", "[2,3]", 0, 24) "}";
  size_t size;
  unsigned char *buf = make_file(header, sizeof header - 1, -1, 24, &size);
  float values[6] = {1, 2, NAN, 4, INFINITY, 6};
  memcpy(buf + 8 + sizeof header - 1, values, sizeof values);
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open_memory(buf, size, "w.st", &f), GRAD_OK);
  float out[6];
  const int64_t right[2] = {2, 3}, swapped[2] = {3, 2}, flat[1] = {6};
  ck_assert_error(grad__st_read_f32(f, "w", 2, swapped, false, out), GRAD_E_SHAPE,
                  "w.st: tensor 'w' has shape [2, 3] but [3, 2] is expected");
  ck_assert_error(grad__st_read_f32(f, "w", 1, flat, false, out), GRAD_E_SHAPE,
                  "has shape [2, 3] but [6] is expected");
  ck_assert_error(grad__st_read_f32(f, "nope", 2, right, false, out), GRAD_E_MISSING,
                  "w.st: no tensor named 'nope'");
  size_t nan_byte = 8 + (sizeof header - 1) + 2 * 4;
  char expect[128];
  snprintf(expect, sizeof expect, "tensor 'w' element 2 (file byte %zu) is NaN", nan_byte);
  ck_assert_error(grad__st_read_f32(f, "w", 2, right, true, out), GRAD_E_NUMERIC, expect);
  ck_assert_int_eq(grad__st_read_f32(f, "w", 2, right, false, out), GRAD_OK);
  ck_assert(out[0] == 1.0f && isnan(out[2]) && isinf(out[4]) && out[5] == 6.0f);
  values[2] = 3;
  memcpy(buf + 8 + sizeof header - 1, values, sizeof values);
  ck_assert_error(grad__st_read_f32(f, "w", 2, right, true, out), GRAD_E_NUMERIC,
                  "element 4 (file byte");
  ck_assert(strstr(grad_last_error(), "is +Inf"));
  grad__st_close(f);
  free(buf);
}
END_TEST

int main(void) {
  Suite *s = suite_create("safetensors_errors");
  TCase *tc = tcase_create("safetensors_errors");
  tcase_add_loop_test(tc, corrupt_file_is_rejected, 0,
                      (int)(sizeof bad_cases / sizeof bad_cases[0]));
  tcase_add_test(tc, short_and_oversized_headers);
  tcase_add_test(tc, corrupt_file_on_disk_names_path);
  tcase_add_test(tc, valid_corner_cases_are_accepted);
  tcase_add_test(tc, read_f32_checks_shape_name_and_values);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
