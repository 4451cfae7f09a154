/*
 * Decoding budgets (grad_image_limits): each is enforced before the memory
 * or work it bounds is spent, fails with GRAD_E_TOO_LARGE naming the field
 * to raise, and raising it lets the same input through. The hostile inputs
 * are made here: a PNG of 8 x 8 pixels followed by 128 MB of compressed
 * zeros in its IDAT, and a progressive JPEG of 190 scans.
 */
#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <unistd.h>

#include <jpeglib.h>
#include <zlib.h>

#include <grad/image.h>

#include "core.h"
#include "testutil.h"

#define ck_assert_too_large(call, field)                                             \
  do {                                                                               \
    grad_status s_ = (call);                                                         \
    ck_assert_msg(s_ == GRAD_E_TOO_LARGE, "%s gave %s (%s)", #call, grad_status_name(s_), \
                  grad_last_error());                                                \
    ck_assert_msg(strstr(grad_last_error(), (field)) != NULL, "\"%s\" lacks %s",     \
                  grad_last_error(), (field));                                       \
  } while (0)

typedef struct buffer {
  unsigned char *data;
  size_t size, capacity;
} buffer;

static void append(buffer *b, const void *data, size_t n) {
  if (b->size + n > b->capacity) {
    b->capacity = (b->size + n) * 2;
    b->data = realloc(b->data, b->capacity);
    ck_assert_ptr_nonnull(b->data);
  }
  if (n) memcpy(b->data + b->size, data, n); /* data may be NULL for an empty chunk */
  b->size += n;
}

static void append_be32(buffer *b, uint32_t v) {
  unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  append(b, p, 4);
}

static void append_chunk(buffer *b, const char *type, const unsigned char *data, uint32_t n) {
  append_be32(b, n);
  size_t start = b->size;
  append(b, type, 4);
  append(b, data, n);
  append_be32(b, (uint32_t)crc32(0, b->data + start, (uInt)(n + 4)));
}

/* An 8 x 8 gray PNG whose zlib stream goes on with `surplus_mb` MB of zeros
 * after the 8 rows (filter byte + 8 pixels each). */
static buffer surplus_png(int surplus_mb) {
  buffer png = {0}, idat = {0};
  append(&png, "\x89PNG\r\n\x1a\n", 8);
  unsigned char ihdr[13] = {0, 0, 0, 8, 0, 0, 0, 8, 8, 0, 0, 0, 0};
  append_chunk(&png, "IHDR", ihdr, 13);
  z_stream z = {0};
  ck_assert_int_eq(deflateInit(&z, 9), Z_OK);
  static unsigned char in[1 << 20], out[1 << 16];
  memset(in, 0, sizeof in);
  for (int i = 0; i < 8; i++) in[i * 9 + 1 + i] = 200; /* a diagonal */
  for (int chunk = 0; chunk <= surplus_mb; chunk++) {
    z.next_in = in;
    z.avail_in = chunk == 0 ? 72 : sizeof in;
    int flush = chunk == surplus_mb ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = out;
      z.avail_out = sizeof out;
      deflate(&z, flush);
      append(&idat, out, sizeof out - z.avail_out);
    } while (z.avail_out == 0);
    if (chunk == 0) memset(in, 0, 72);
  }
  deflateEnd(&z);
  append_chunk(&png, "IDAT", idat.data, (uint32_t)idat.size);
  append_chunk(&png, "IEND", NULL, 0);
  free(idat.data);
  return png;
}

START_TEST(png_surplus_data_is_refused_before_inflating) {
  buffer png = surplus_png(128);
  ck_assert_uint_lt(png.size, 200 * 1024); /* 128 MB of zeros in ~130 KB */
  grad_image *image = (grad_image *)1;
  ck_assert_too_large(grad_image_load_memory(png.data, png.size, &image), "max_png_surplus_bytes");
  ck_assert_ptr_null(image);
  free(png.data);

  /* The same image without surplus decodes to its pixels. */
  png = surplus_png(0);
  ck_assert_int_eq(grad_image_load_memory(png.data, png.size, &image), GRAD_OK);
  ck_assert_int_eq(grad_image_width(image), 8);
  ck_assert_uint_eq(grad_image_pixels(image)[3 * 8 + 3], 200);
  ck_assert_uint_eq(grad_image_pixels(image)[3 * 8 + 4], 0);
  grad_image_free(image);
  free(png.data);
}
END_TEST

/* A 64 x 64 RGB progressive JPEG with one scan per AC coefficient of each
 * component: 1 DC scan + 3 x 63 = 190 scans (valid: spectral selection). */
static buffer many_scan_jpeg(void) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char *mem = NULL;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &mem, &size);
  c.image_width = 64;
  c.image_height = 64;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  static jpeg_scan_info scans[1 + 3 * 63];
  int n = 0;
  scans[n++] = (jpeg_scan_info){3, {0, 1, 2, 0}, 0, 0, 0, 0};
  for (int comp = 0; comp < 3; comp++)
    for (int k = 1; k < 64; k++) scans[n++] = (jpeg_scan_info){1, {comp, 0, 0, 0}, k, k, 0, 0};
  c.scan_info = scans;
  c.num_scans = n;
  jpeg_start_compress(&c, TRUE);
  unsigned char row[64 * 3];
  while (c.next_scanline < 64) {
    for (int x = 0; x < 64; x++) {
      row[3 * x] = (unsigned char)(x * 4);
      row[3 * x + 1] = (unsigned char)(c.next_scanline * 4);
      row[3 * x + 2] = (unsigned char)((x ^ c.next_scanline) * 4);
    }
    JSAMPROW r = row;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  buffer b = {mem, size, size};
  return b;
}

START_TEST(jpeg_scans_beyond_the_budget_are_refused) {
  buffer jpeg = many_scan_jpeg();
  grad_image *image = (grad_image *)1;
  ck_assert_too_large(grad_image_load_memory(jpeg.data, jpeg.size, &image), "max_jpeg_scans");
  ck_assert_ptr_null(image);
  grad_image_limits limits;
  grad_image_limits_get(&limits);
  ck_assert_uint_eq(limits.max_jpeg_scans, 100);
  limits.max_jpeg_scans = 200;
  ck_assert_int_eq(grad_image_limits_set(&limits), GRAD_OK);
  ck_assert_int_eq(grad_image_load_memory(jpeg.data, jpeg.size, &image), GRAD_OK);
  ck_assert_int_eq(grad_image_width(image), 64);
  grad_image_free(image);
  ck_assert_int_eq(grad_image_limits_set(NULL), GRAD_OK);
  free(jpeg.data);
}
END_TEST

START_TEST(pixel_budgets_apply_to_every_image) {
  grad_image_limits limits;
  grad_image_limits_init(&limits);
  ck_assert_uint_eq(limits.max_pixels, (uint64_t)1 << 26);
  ck_assert_uint_eq(limits.max_pixels_per_byte, 16384);
  const char *png = test_fixture("image/png_rgb8.png");
  grad_image *image = NULL;
  ck_assert_int_eq(grad_image_load(png, &image), GRAD_OK);
  int w = grad_image_width(image), h = grad_image_height(image);
  const uint8_t *px = grad_image_pixels(image);

  limits.max_pixels = (uint64_t)w * h - 1;
  ck_assert_int_eq(grad_image_limits_set(&limits), GRAD_OK);
  grad_image *other = (grad_image *)1;
  ck_assert_too_large(grad_image_load(png, &other), "max_pixels");
  ck_assert_ptr_nonnull(strstr(grad_last_error(), png));
  ck_assert_too_large(grad_image_from_pixels(px, w, h, 3, (size_t)w * 3, &other), "max_pixels");
  ck_assert_ptr_null(other);

  grad_image_limits_init(&limits);
  limits.max_pixels_per_byte = 1;
  ck_assert_int_eq(grad_image_limits_set(&limits), GRAD_OK);
  uint8_t *big = calloc(600 * 200, 3);
  ck_assert_int_eq(grad_image_from_pixels(big, 600, 200, 3, 1800, &other), GRAD_OK);
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/flat.png", dir);
  ck_assert_int_eq(grad_image_save_png(other, path), GRAD_OK); /* 120000 px in < 1 KB */
  grad_image_free(other);
  ck_assert_too_large(grad_image_load(path, &other), "max_pixels_per_byte");
  ck_assert_int_eq(grad_image_limits_set(NULL), GRAD_OK);
  ck_assert_int_eq(grad_image_load(path, &other), GRAD_OK);
  grad_image_free(other);
  unlink(path);
  rmdir(dir);
  free(big);
  grad_image_free(image);

  /* Nonsense limits are refused and change nothing. */
  grad_image_limits_init(&limits);
  limits.max_pixels = (uint64_t)GRAD_IMAGE_MAX_PIXELS + 1;
  ck_assert_int_eq(grad_image_limits_set(&limits), GRAD_E_INVALID_ARG);
  limits.max_pixels = 100;
  limits.struct_size = 8;
  ck_assert_int_eq(grad_image_limits_set(&limits), GRAD_E_INVALID_ARG);
  grad_image_limits_get(&limits);
  ck_assert_uint_eq(limits.max_pixels, (uint64_t)1 << 26);
}
END_TEST

int main(void) {
  Suite *suite = suite_create("decode_budget");
  TCase *tc = tcase_create("decode_budget");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, png_surplus_data_is_refused_before_inflating);
  tcase_add_test(tc, jpeg_scans_beyond_the_budget_are_refused);
  tcase_add_test(tc, pixel_budgets_apply_to_every_image);
  suite_add_tcase(suite, tc);
  return test_run_suite(suite);
}
