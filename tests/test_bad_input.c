/*
 * The bad-input matrix: every loader fed truncated, bit-flipped, oversized,
 * missing and unreadable files, every saver an unwritable or full output,
 * and every allocation failing in turn. What is checked everywhere: either
 * a valid result, or an error status from the documented set whose message
 * names the culprit (file, buffer label or tensor) - never a crash, a leak
 * (the ASan job, .ci/sanitize) or a partial or temporary file left behind.
 * Corrupt inputs are derived from the committed fixtures deterministically.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h> /* before jpeglib.h, which needs FILE */
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include <grad/backbone.h>
#include <grad/image.h>
#include <grad/tensorfile.h>

#include "core.h"
#include "dataset.h"
#include "safetensors.h"
#include "testutil.h"

/* ---- Helpers -------------------------------------------------------------- */

static const char *const png_files[] = {
  "image/png_gray1.png",     "image/png_gray16.png",       "image/png_graya8.png",
  "image/png_pal4_trns.png", "image/png_rgb8.png",         "image/png_rgba16.png",
  "image/png_pal8.png",      "image/png_adam7_rgba16.png", "image/png_adam7_pal4.png",
};
static const char *const jpeg_files[] = {
  "image/jpeg_gray.jpg",        "image/jpeg_rgb_420.jpg", "image/jpeg_rgb_444.jpg",
  "image/jpeg_progressive.jpg", "image/jpeg_cmyk.jpg",    "image/jpeg_ycck.jpg",
};
static const char *const st_files[] = {"safetensors/small.safetensors",
                                       "train/optim_golden.safetensors"};
#define COUNT(a) (sizeof(a) / sizeof(a)[0])

static unsigned char *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  rewind(f);
  unsigned char *data = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(data);
  ck_assert_uint_eq(fread(data, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return data;
}

static void spit(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  ck_assert_uint_eq(fwrite(data, 1, size, f), size);
  ck_assert_int_eq(fclose(f), 0);
}

/* An exact-size copy, so ASan sees any read past the end of the input. */
static unsigned char *copy_of(const unsigned char *data, size_t size) {
  unsigned char *c = malloc(size ? size : 1);
  ck_assert_ptr_nonnull(c);
  memcpy(c, data, size);
  return c;
}

/* Offsets to cut or flip at: all of the first 64, then about 96 more, and
 * the last 4 (where the end markers are). */
static size_t next_offset(size_t at, size_t size) {
  if (at < 64 || at + 4 >= size) return at + 1;
  size_t step = (size - 64) / 96 + 1;
  return at + step + 4 >= size ? size - 4 : at + step;
}

static int folder_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

#define ck_assert_fails(expr, status, culprit)                                                \
  do {                                                                                        \
    grad_status s_ = (expr);                                                                  \
    ck_assert_msg(s_ == (status), "%s gave %s, expected %s (%s)", #expr, grad_status_name(s_), \
                  grad_status_name(status), grad_last_error());                              \
    ck_assert_msg(strstr(grad_last_error(), (culprit)) != NULL,                               \
                  "message '%s' does not name '%s'", grad_last_error(), (culprit));           \
  } while (0)

/* Keeps the pixel reads below from being optimised away. */
static volatile unsigned pixel_sink;

/* The contract of a decode of damaged bytes; returns the image or NULL. */
static grad_image *decode_checked(const unsigned char *data, size_t size, const char *what) {
  grad_image *image = (grad_image *)&image;
  grad_status s = grad_image_load_memory(data, size, &image);
  if (s != GRAD_OK) {
    ck_assert_msg(s == GRAD_E_FORMAT || s == GRAD_E_UNSUPPORTED || s == GRAD_E_TOO_LARGE,
                  "%s: %s (%s)", what, grad_status_name(s), grad_last_error());
    ck_assert_msg(image == NULL, "%s: output set on failure", what);
    ck_assert_msg(!strncmp(grad_last_error(), "<memory>", 8), "%s: message '%s'", what,
                  grad_last_error());
    return NULL;
  }
  int w = grad_image_width(image), h = grad_image_height(image), c = grad_image_channels(image);
  ck_assert_msg(w > 0 && h > 0 && (c == 1 || c == 3), "%s: %d x %d x %d", what, w, h, c);
  const uint8_t *p = grad_image_pixels(image);
  unsigned sum = 0;
  for (size_t i = 0; i < (size_t)w * h * c; i++) sum += p[i]; /* ASan checks the size */
  pixel_sink = sum;
  return image;
}

/* ---- Images: truncation, bit flips, extreme sizes ------------------------- */

START_TEST(truncated_images_fail) {
  for (size_t f = 0; f < COUNT(png_files) + COUNT(jpeg_files); f++) {
    bool png = f < COUNT(png_files);
    const char *name = png ? png_files[f] : jpeg_files[f - COUNT(png_files)];
    size_t size;
    unsigned char *data = slurp(test_fixture(name), &size);
    grad_image *full = decode_checked(data, size, name);
    ck_assert_msg(full != NULL, "%s does not decode", name);
    size_t bytes = (size_t)grad_image_width(full) * grad_image_height(full) *
                   grad_image_channels(full);
    for (size_t cut = 0; cut < size; cut = next_offset(cut, size)) {
      char what[128];
      snprintf(what, sizeof what, "%s cut at %zu of %zu", name, cut, size);
      unsigned char *part = copy_of(data, cut);
      grad_image *image = decode_checked(part, cut, what);
      /* A PNG needs its IEND. A JPEG is whole once its last scan is in:
       * only the EOI marker (the last 2 bytes) may be missing, and then the
       * pixels must be the complete ones. */
      ck_assert_msg(image == NULL || (!png && cut >= size - 2), "%s decodes", what);
      if (image)
        ck_assert_msg(!memcmp(grad_image_pixels(image), grad_image_pixels(full), bytes),
                      "%s: pixels differ", what);
      grad_image_free(image);
      free(part);
    }
    grad_image_free(full);
    free(data);
  }
}
END_TEST

START_TEST(bit_flipped_images_decode_or_fail) {
  int decoded = 0, failed = 0;
  for (size_t f = 0; f < COUNT(png_files) + COUNT(jpeg_files); f++) {
    const char *name = f < COUNT(png_files) ? png_files[f] : jpeg_files[f - COUNT(png_files)];
    size_t size;
    unsigned char *data = slurp(test_fixture(name), &size);
    for (size_t at = 0; at < size; at = next_offset(at, size)) {
      for (int k = 0; k < 2; k++) {
        int bit = (int)((at * 3 + (size_t)k * 5) % 8);
        char what[128];
        snprintf(what, sizeof what, "%s with bit %d of byte %zu flipped", name, bit, at);
        unsigned char *bad = copy_of(data, size);
        bad[at] ^= (unsigned char)(1u << bit);
        grad_image *image = decode_checked(bad, size, what);
        if (image) decoded++;
        else failed++;
        grad_image_free(image);
        free(bad);
      }
    }
    free(data);
  }
  /* Both outcomes must occur, or the flips did not reach the decoders. */
  ck_assert_int_gt(decoded, 100);
  ck_assert_int_gt(failed, 100);
}
END_TEST

/* Big-endian 32-bit store. */
static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* The CRC of PNG chunks (ISO 3309, as zlib's crc32). */
static uint32_t png_crc(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

/* A PNG fixture with its IHDR declaring width x height (CRC fixed up). */
static unsigned char *png_with_size(uint32_t width, uint32_t height, size_t *size) {
  unsigned char *data = slurp(test_fixture("image/png_rgb8.png"), size);
  ck_assert(!memcmp(data + 12, "IHDR", 4));
  put_be32(data + 16, width);
  put_be32(data + 20, height);
  put_be32(data + 29, png_crc(data + 12, 17));
  return data;
}

/* A JPEG fixture with its SOF declaring width x height. */
static unsigned char *jpeg_with_size(unsigned width, unsigned height, size_t *size) {
  unsigned char *data = slurp(test_fixture("image/jpeg_rgb_420.jpg"), size);
  size_t p = 2;
  while (p + 9 < *size && !(data[p] == 0xFF && data[p + 1] >= 0xC0 && data[p + 1] <= 0xC2))
    p += 2 + ((size_t)data[p + 2] << 8 | data[p + 3]); /* skip the marker segment */
  ck_assert_msg(p + 9 < *size, "no SOF marker");
  data[p + 5] = (unsigned char)(height >> 8), data[p + 6] = (unsigned char)height;
  data[p + 7] = (unsigned char)(width >> 8), data[p + 8] = (unsigned char)width;
  return data;
}

START_TEST(huge_declared_sizes_are_refused) {
  static const uint32_t sizes[][2] = {
    {GRAD_IMAGE_MAX_SIDE + 1, 1}, {1, GRAD_IMAGE_MAX_SIDE + 1}, {16385, 16385},
    {0x7fffffff, 0x7fffffff}};
  for (size_t i = 0; i < COUNT(sizes); i++) {
    size_t size;
    unsigned char *png = png_with_size(sizes[i][0], sizes[i][1], &size);
    grad_image *image = NULL;
    ck_assert_fails(grad_image_load_memory(png, size, &image), GRAD_E_TOO_LARGE, "<memory>");
    char dims[64];
    snprintf(dims, sizeof dims, "%u x %u", (unsigned)sizes[i][0], (unsigned)sizes[i][1]);
    ck_assert_msg(strstr(grad_last_error(), dims), "'%s' lacks %s", grad_last_error(), dims);
    ck_assert_ptr_null(image);
    free(png);
  }
  size_t size;
  unsigned char *jpeg = jpeg_with_size(65500, 65500, &size);
  grad_image *image = NULL;
  ck_assert_fails(grad_image_load_memory(jpeg, size, &image), GRAD_E_TOO_LARGE, "65500 x 65500");
  free(jpeg);
  /* The same through a file: the message names the path. */
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/huge.png", dir);
  unsigned char *png = png_with_size(16385, 16385, &size);
  spit(path, png, size);
  ck_assert_fails(grad_image_load(path, &image), GRAD_E_TOO_LARGE, path);
  free(png);
  unlink(path);
  rmdir(dir);
}
END_TEST

/* A 1 x 1 JPEG of one gray or RGB value, encoded with libjpeg. */
static unsigned char *jpeg_1x1(int channels, const unsigned char *value, size_t *size) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char *out = NULL;
  unsigned long n = 0;
  jpeg_mem_dest(&c, &out, &n);
  c.image_width = c.image_height = 1;
  c.input_components = channels;
  c.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  jpeg_start_compress(&c, TRUE);
  JSAMPROW row = (JSAMPROW)value;
  jpeg_write_scanlines(&c, &row, 1);
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  *size = n;
  return out;
}

START_TEST(one_pixel_images_decode) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/one.png", dir);
  const unsigned char rgb[3] = {200, 17, 99}, gray[1] = {77};
  static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdev[3] = {0.229f, 0.224f, 0.225f};
  for (int channels = 1; channels <= 3; channels += 2) {
    const unsigned char *value = channels == 1 ? gray : rgb;
    ck_assert_int_eq(grad_png_write(path, value, 1, 1, channels, (size_t)channels), GRAD_OK);
    grad_image *image = NULL;
    ck_assert_int_eq(grad_image_load(path, &image), GRAD_OK);
    ck_assert_int_eq(grad_image_width(image), 1);
    ck_assert_int_eq(grad_image_height(image), 1);
    ck_assert_int_eq(grad_image_channels(image), channels);
    ck_assert_int_eq(memcmp(grad_image_pixels(image), value, (size_t)channels), 0);
    /* Resizing a constant image keeps it constant: every tensor value is
     * (v / 255 - mean) / std of its channel. */
    float tensor[3 * 7 * 7];
    ck_assert_int_eq(grad_image_to_tensor(image, 7, tensor), GRAD_OK);
    for (int c = 0; c < 3; c++) {
      double v = value[channels == 1 ? 0 : c] / 255.0;
      for (int i = 0; i < 49; i++)
        ck_assert_double_eq_tol(tensor[c * 49 + i], (v - mean[c]) / stdev[c], 1e-5);
    }
    grad_image_free(image);

    size_t size;
    unsigned char *jpeg = jpeg_1x1(channels, value, &size);
    ck_assert_int_eq(grad_image_load_memory(jpeg, size, &image), GRAD_OK);
    ck_assert_int_eq(grad_image_width(image), 1);
    ck_assert_int_eq(grad_image_channels(image), channels);
    for (int c = 0; c < channels; c++) /* quality 100: within rounding */
      ck_assert_int_le(abs((int)grad_image_pixels(image)[c] - (int)value[c]), 2);
    grad_image_free(image);
    free(jpeg);
  }
  unlink(path);
  rmdir(dir);
}
END_TEST

/* ---- Safetensors: truncation and bit flips --------------------------------- */

/* Reads every tensor of an open file; returns how many were loadable. */
static int read_all_tensors(const grad__st_file *file, const char *what) {
  int loadable = 0;
  for (size_t i = 0; i < grad__st_count(file); i++) {
    const grad__st_tensor *t = grad__st_at(file, i);
    float *out = malloc(t->count * sizeof *out + 1);
    ck_assert_ptr_nonnull(out);
    grad_status s = grad__st_read_f32(file, t->name, t->ndim, t->shape, true, out);
    if (t->dtype == GRAD__DTYPE_OTHER) {
      ck_assert_msg(s == GRAD_E_UNSUPPORTED, "%s: %s", what, grad_status_name(s));
    } else if (s != GRAD_OK) {
      ck_assert_msg(s == GRAD_E_NUMERIC, "%s: %s (%s)", what, grad_status_name(s),
                    grad_last_error());
      ck_assert_msg(strstr(grad_last_error(), t->name), "%s: '%s' does not name the tensor",
                    what, grad_last_error());
    } else {
      loadable++;
    }
    free(out);
  }
  return loadable;
}

START_TEST(truncated_safetensors_fail) {
  const char *dir = test_tmpdir();
  for (size_t f = 0; f < COUNT(st_files); f++) {
    size_t size;
    unsigned char *data = slurp(test_fixture(st_files[f]), &size);
    for (size_t cut = 0; cut < size; cut = next_offset(cut, size)) {
      char label[128];
      snprintf(label, sizeof label, "%s cut at %zu", st_files[f], cut);
      unsigned char *part = copy_of(data, cut);
      grad__st_file *file = (grad__st_file *)part;
      ck_assert_fails(grad__st_open_memory(part, cut, label, &file), GRAD_E_FORMAT, label);
      ck_assert_ptr_null(file);
      free(part);
    }
    /* Through files and the public API: the message names the path. */
    for (size_t cut = 0; cut < size; cut += size / 5 + 1) {
      char path[512];
      snprintf(path, sizeof path, "%s/cut%zu.safetensors", dir, cut);
      spit(path, data, cut);
      grad_tensorfile *tf = NULL;
      ck_assert_fails(grad_tensorfile_open(path, &tf), GRAD_E_FORMAT, path);
      ck_assert_ptr_null(tf);
      unlink(path);
    }
    free(data);
  }
  rmdir(dir);
}
END_TEST

START_TEST(bit_flipped_safetensors_load_or_fail) {
  int opened = 0, failed = 0;
  for (size_t f = 0; f < COUNT(st_files); f++) {
    size_t size;
    unsigned char *data = slurp(test_fixture(st_files[f]), &size);
    for (size_t at = 0; at < size; at = next_offset(at, size)) {
      for (int k = 0; k < 2; k++) {
        int bit = (int)((at * 5 + (size_t)k * 3) % 8);
        char label[128];
        snprintf(label, sizeof label, "%s flip %zu.%d", st_files[f], at, bit);
        unsigned char *bad = copy_of(data, size);
        bad[at] ^= (unsigned char)(1u << bit);
        grad__st_file *file = NULL;
        grad_status s = grad__st_open_memory(bad, size, label, &file);
        if (s == GRAD_OK) {
          opened++;
          read_all_tensors(file, label);
          grad__st_close(file);
        } else {
          failed++;
          ck_assert_msg(s == GRAD_E_FORMAT || s == GRAD_E_UNSUPPORTED || s == GRAD_E_TOO_LARGE,
                        "%s: %s (%s)", label, grad_status_name(s), grad_last_error());
          ck_assert_msg(!strncmp(grad_last_error(), label, strlen(label)), "%s: message '%s'",
                        label, grad_last_error());
        }
        free(bad);
      }
    }
    free(data);
  }
  ck_assert_int_gt(opened, 50); /* flips in the data section */
  ck_assert_int_gt(failed, 50); /* flips in the header */
}
END_TEST

/* ---- Missing, empty and unreadable inputs ----------------------------------- */

START_TEST(missing_and_empty_inputs) {
  const char *dir = test_tmpdir();
  char path[512], sub[512];
  snprintf(path, sizeof path, "%s/absent.png", dir);
  grad_image *image = NULL;
  ck_assert_fails(grad_image_load(path, &image), GRAD_E_IO, path);
  grad_tensorfile *tf = NULL;
  ck_assert_fails(grad_tensorfile_open(path, &tf), GRAD_E_IO, path);

  snprintf(path, sizeof path, "%s/empty.png", dir); /* a 0-byte file */
  spit(path, "", 0);
  ck_assert_fails(grad_image_load(path, &image), GRAD_E_FORMAT, path);
  ck_assert_fails(grad_tensorfile_open(path, &tf), GRAD_E_FORMAT, path);
  unlink(path);

  grad__path_list list = {0};
  ck_assert_fails(grad__training_images(dir, &list), GRAD_E_MISSING, dir); /* empty folder */
  grad__path_list_free(&list);
  snprintf(sub, sizeof sub, "%s/train", dir); /* an empty MVTec-looking category */
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  snprintf(path, sizeof path, "%s/train/good", dir);
  ck_assert_int_eq(mkdir(path, 0755), 0);
  ck_assert_fails(grad__training_images(dir, &list), GRAD_E_MISSING, path);
  grad__path_list_free(&list);
  snprintf(path, sizeof path, "%s/no-such-folder", dir);
  ck_assert_fails(grad__list_images(path, &list), GRAD_E_IO, path);
  grad__path_list_free(&list);
  snprintf(path, sizeof path, "%s/train/good", dir);
  rmdir(path);
  rmdir(sub);
  rmdir(dir);
}
END_TEST

START_TEST(unreadable_inputs) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/locked.png", dir);
  size_t size;
  unsigned char *png = slurp(test_fixture("image/png_rgb8.png"), &size);
  spit(path, png, size);
  free(png);
  ck_assert_int_eq(chmod(path, 0), 0);
  FILE *probe = fopen(path, "rb");
  grad_image *image = NULL;
  grad__st_file *file = NULL;
  if (probe) {
    /* Root reads through chmod 000; the folder case below still covers a
     * path that cannot be read as a file. */
    fclose(probe);
    fprintf(stderr, "note %s: running as root, chmod 000 does not block reads\n", __func__);
  } else {
    ck_assert_fails(grad_image_load(path, &image), GRAD_E_IO, path);
    ck_assert_fails(grad__st_open(path, &file), GRAD_E_IO, path);
  }
  unlink(path);
  /* A folder where a file is expected. */
  ck_assert_fails(grad_image_load(dir, &image), GRAD_E_IO, dir);
  ck_assert_fails(grad__st_open(dir, &file), GRAD_E_IO, dir);
  ck_assert_ptr_null(image);
  ck_assert_ptr_null(file);
  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.arch = "resnet18";
  opts.weights_path = dir;
  grad_backbone *bb = NULL;
  ck_assert_fails(grad_backbone_create(&opts, &bb), GRAD_E_IO, dir);
  ck_assert_ptr_null(bb);
  rmdir(dir);
}
END_TEST

/* ---- Unwritable and full outputs ------------------------------------------- */

static grad__st_writer *writer_of(size_t floats) {
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  float *v = malloc(floats * sizeof *v);
  ck_assert_ptr_nonnull(v);
  uint32_t x = 12345;
  for (size_t i = 0; i < floats; i++) v[i] = (float)((x = x * 1664525u + 1013904223u) >> 8);
  int64_t shape[1] = {(int64_t)floats};
  ck_assert_int_eq(grad__st_writer_add(w, "weights", 1, shape, v), GRAD_OK);
  free(v);
  return w;
}

/* Random pixels, which PNG cannot compress. */
static uint8_t *noise(size_t n) {
  uint8_t *p = malloc(n);
  ck_assert_ptr_nonnull(p);
  uint32_t x = 987654321;
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
  return p;
}

START_TEST(unwritable_outputs) {
  const char *dir = test_tmpdir();
  char path[512];
  uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  grad__st_writer *w = writer_of(16);
  snprintf(path, sizeof path, "%s/no/such/folder/out.png", dir);
  ck_assert_fails(grad_png_write(path, px, 2, 2, 3, 6), GRAD_E_IO, path);
  ck_assert_fails(grad__st_writer_save(w, path), GRAD_E_IO, path);
  /* A folder as the target: nothing is replaced, no temporary is left. */
  snprintf(path, sizeof path, "%s/folder", dir);
  ck_assert_int_eq(mkdir(path, 0755), 0);
  ck_assert_fails(grad_png_write(path, px, 2, 2, 3, 6), GRAD_E_IO, path);
  ck_assert_fails(grad__st_writer_save(w, path), GRAD_E_IO, path);
  ck_assert_int_eq(folder_entries(dir), 1);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert(S_ISDIR(st.st_mode));
  rmdir(path);
  grad__st_writer_free(w);
  rmdir(dir);
}
END_TEST

/* Targets that are not regular files are written in place: a symlink to
 * /dev/full (made in a temporary folder, so /dev itself is never at risk)
 * gives GRAD_E_IO with the link left as it was; one to /dev/null succeeds. */
START_TEST(device_targets_are_written_in_place) {
  const char *dir = test_tmpdir();
  char full[512], null[512], link_target[64];
  snprintf(full, sizeof full, "%s/full.png", dir);
  snprintf(null, sizeof null, "%s/null.safetensors", dir);
  ck_assert_int_eq(symlink("/dev/full", full), 0);
  ck_assert_int_eq(symlink("/dev/null", null), 0);
  uint8_t px[12] = {0};
  ck_assert_fails(grad_png_write(full, px, 2, 2, 3, 6), GRAD_E_IO, full);
  ck_assert_int_eq(grad_png_write(null, px, 2, 2, 3, 6), GRAD_OK);
  grad__st_writer *w = writer_of(1000);
  grad_status to_full = grad__st_writer_save(w, full), to_null = grad__st_writer_save(w, null);
  grad__st_writer_free(w); /* before any assertion can end the test */
  ck_assert_int_eq(to_full, GRAD_E_IO);
  ck_assert_int_eq(to_null, GRAD_OK);
  ck_assert_int_eq(folder_entries(dir), 2); /* no temporary left */
  ssize_t n = readlink(full, link_target, sizeof link_target - 1);
  ck_assert_int_eq(n, 9);
  link_target[n] = 0;
  ck_assert_str_eq(link_target, "/dev/full");
  n = readlink(null, link_target, sizeof link_target - 1);
  ck_assert_int_eq(n, 9);
  unlink(full), unlink(null);
  rmdir(dir);
}
END_TEST

/* Saving onto a 64 KB tmpfs in a private mount namespace: a save that does
 * not fit fails with GRAD_E_IO, leaves the previous file byte for byte and
 * no temporary file. Skipped where mounting is not allowed. */
START_TEST(full_disk_keeps_the_old_file) {
  if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) {
    fprintf(stderr, "SKIP %s: cannot create a mount namespace (%s)\n", __func__,
            strerror(errno));
    return;
  }
  const char *dir = test_tmpdir();
  if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
    fprintf(stderr, "SKIP %s: cannot mount a tmpfs (%s)\n", __func__, strerror(errno));
    rmdir(dir);
    return;
  }
  char png_path[512], st_path[512];
  snprintf(png_path, sizeof png_path, "%s/map.png", dir);
  snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
  uint8_t *big = noise(200 * 200 * 3);
  /* Small saves fit (the mount works), and are the "old" files. */
  ck_assert_int_eq(grad_png_write(png_path, big, 8, 8, 3, 600), GRAD_OK);
  grad__st_writer *small = writer_of(64), *large = writer_of(40000);
  ck_assert_int_eq(grad__st_writer_save(small, st_path), GRAD_OK);
  size_t png_size, st_size, size;
  unsigned char *png_old = slurp(png_path, &png_size), *st_old = slurp(st_path, &st_size);

  ck_assert_fails(grad_png_write(png_path, big, 200, 200, 3, 600), GRAD_E_IO, png_path);
  ck_assert_fails(grad__st_writer_save(large, st_path), GRAD_E_IO, st_path);
  ck_assert_int_eq(folder_entries(dir), 2);
  unsigned char *now = slurp(png_path, &size);
  ck_assert(size == png_size && !memcmp(now, png_old, size));
  free(now);
  now = slurp(st_path, &size);
  ck_assert(size == st_size && !memcmp(now, st_old, size));
  free(now);

  free(png_old), free(st_old), free(big);
  grad__st_writer_free(small), grad__st_writer_free(large);
  umount2(dir, MNT_DETACH);
  rmdir(dir);
}
END_TEST

/* ---- Inputs that once misbehaved (tests/fixtures/regress) ------------------ */

static long peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  long kb = -1;
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb;
}

/* Each file there is a reproducer of a fixed bug: it must be refused with
 * an error naming it, without a crash and without a large allocation (the
 * first, png_text_2gb.png, once made libpng allocate and clear 2 GB). */
START_TEST(regression_inputs_fail_cleanly) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", test_fixture("regress"));
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "%s: %s", dir, strerror(errno));
  int files = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    long before = peak_rss_kb();
    grad_status s;
    if (strstr(e->d_name, ".safetensors")) {
      grad__st_file *file = NULL;
      s = grad__st_open(path, &file);
      if (s == GRAD_OK) {
        read_all_tensors(file, path);
        grad__st_close(file);
      }
    } else {
      grad_image *image = NULL;
      s = grad_image_load(path, &image);
      grad_image_free(image);
    }
    ck_assert_msg(s == GRAD_E_FORMAT || s == GRAD_E_UNSUPPORTED || s == GRAD_E_TOO_LARGE,
                  "%s: %s (%s)", path, grad_status_name(s), grad_last_error());
    ck_assert_msg(strstr(grad_last_error(), path), "'%s' does not name %s", grad_last_error(),
                  path);
    long grown = peak_rss_kb() - before;
    ck_assert_msg(grown < 64 * 1024, "%s: peak memory grew by %ld MB", path, grown / 1024);
    files++;
  }
  closedir(d);
  ck_assert_int_gt(files, 0);
}
END_TEST

/* ---- Allocation failure sweeps -------------------------------------------- */

/* Runs op with the k-th allocation failing for k = 0, 1, ... until it
 * succeeds: every failure must be GRAD_E_NOMEM naming the culprit. */
#define SWEEP(op, culprit, cleanup)                                                          \
  do {                                                                                       \
    long k_ = 0;                                                                             \
    grad_status s_;                                                                          \
    do {                                                                                     \
      grad__alloc_fail_after(k_++);                                                          \
      s_ = (op);                                                                             \
      grad__alloc_fail_after(-1);                                                            \
      if (s_ != GRAD_OK) {                                                                   \
        ck_assert_msg(s_ == GRAD_E_NOMEM, "%s, allocation %ld failing: %s (%s)", #op, k_ - 1, \
                      grad_status_name(s_), grad_last_error());                             \
        ck_assert_msg(strstr(grad_last_error(), (culprit)), "'%s' does not name %s",        \
                      grad_last_error(), (culprit));                                        \
      }                                                                                      \
      cleanup;                                                                               \
    } while (s_ != GRAD_OK && k_ < 5000);                                                    \
    ck_assert_int_eq(s_, GRAD_OK);                                                           \
    ck_assert_int_gt(k_, 1);                                                                 \
  } while (0)

START_TEST(allocation_failures_in_image_loading) {
  static const char *const names[] = {"image/png_gray1.png", "image/png_pal4_trns.png",
                                      "image/png_adam7_rgba16.png", "image/jpeg_ycck.jpg",
                                      "image/jpeg_rgb_420.jpg"};
  for (size_t f = 0; f < COUNT(names); f++) {
    char path[4096];
    snprintf(path, sizeof path, "%s", test_fixture(names[f]));
    grad_image *image = NULL, *resized = NULL;
    SWEEP(grad_image_load(path, &image), path, (void)0);
    SWEEP(grad_image_resize(image, 13, 5, GRAD_RESIZE_BILINEAR, &resized), "resiz",
          (grad_image_free(resized), resized = NULL));
    float tensor[3 * 9 * 9];
    grad__alloc_fail_after(0); /* normalisation allocates nothing, or fails cleanly */
    grad_status s = grad_image_to_tensor(image, 9, tensor);
    grad__alloc_fail_after(-1);
    ck_assert(s == GRAD_OK || s == GRAD_E_NOMEM);
    grad_image_free(image);
  }
}
END_TEST

static grad_status open_and_read(const char *path) {
  grad__st_file *file = NULL;
  grad_status s = grad__st_open(path, &file);
  if (s != GRAD_OK) return s;
  read_all_tensors(file, path);
  grad__st_close(file);
  return GRAD_OK;
}

START_TEST(allocation_failures_in_safetensors) {
  for (size_t f = 0; f < COUNT(st_files); f++) {
    char path[4096];
    snprintf(path, sizeof path, "%s", test_fixture(st_files[f]));
    SWEEP(open_and_read(path), path, (void)0);
  }
  /* Saving: a failed save leaves the old file and no temporary. */
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/out.safetensors", dir);
  spit(path, "old", 3);
  grad__st_writer *w = NULL;
  SWEEP(grad__st_writer_create(&w), "memory", (void)0);
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  SWEEP(grad__st_writer_add(w, "t", 2, shape, v), "t", (void)0);
  long k = 0;
  grad_status s;
  do {
    grad__alloc_fail_after(k++);
    s = grad__st_writer_save(w, path);
    grad__alloc_fail_after(-1);
    ck_assert_msg(s == GRAD_OK || s == GRAD_E_NOMEM, "%s", grad_last_error());
    ck_assert_int_eq(folder_entries(dir), 1);
    if (s != GRAD_OK) {
      size_t size;
      unsigned char *now = slurp(path, &size);
      ck_assert(size == 3 && !memcmp(now, "old", 3));
      free(now);
    }
  } while (s != GRAD_OK && k < 1000);
  ck_assert_int_eq(s, GRAD_OK);
  ck_assert_int_eq(open_and_read(path), GRAD_OK);
  grad__st_writer_free(w);
  unlink(path);
  rmdir(dir);
}
END_TEST

static Suite *bad_input_suite(void) {
  Suite *suite = suite_create("bad_input");
  TCase *tc = tcase_create("bad_input");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, truncated_images_fail);
  tcase_add_test(tc, bit_flipped_images_decode_or_fail);
  tcase_add_test(tc, huge_declared_sizes_are_refused);
  tcase_add_test(tc, one_pixel_images_decode);
  tcase_add_test(tc, truncated_safetensors_fail);
  tcase_add_test(tc, bit_flipped_safetensors_load_or_fail);
  tcase_add_test(tc, missing_and_empty_inputs);
  tcase_add_test(tc, unreadable_inputs);
  tcase_add_test(tc, unwritable_outputs);
  tcase_add_test(tc, device_targets_are_written_in_place);
  tcase_add_test(tc, full_disk_keeps_the_old_file);
  tcase_add_test(tc, regression_inputs_fail_cleanly);
  tcase_add_test(tc, allocation_failures_in_image_loading);
  tcase_add_test(tc, allocation_failures_in_safetensors);
  suite_add_tcase(suite, tc);
  return suite;
}

int main(void) { return test_run_suite(bad_input_suite()); }
