/*
 * Image I/O: decoding of every PNG/JPEG variant against known content and
 * PIL's decoding, corrupt files, PNG writing, and the resizes against PIL
 * and torchvision goldens (tests/make_image_fixtures.py writes them all).
 */
#include <dirent.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grad/grad.h>
#include <grad/image.h>

#include "core.h"
#include "image_internal.h"  /* struct grad_image, to place pixels before a guard page */
#include "resize_internal.h" /* grad__resize_isa_cap */
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

static const char *fixture(const char *name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/image/%s", test_fixtures_dir(), name);
  return path;
}

/* A whole file in a malloc'ed buffer (NULL if missing). */
static unsigned char *slurp(const char *path, size_t *size) {
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *data = malloc((size_t)n + 1);
  *size = fread(data, 1, (size_t)n, f);
  fclose(f);
  return data;
}

static grad_image *load_fixture(const char *name) {
  grad_image *image = NULL;
  grad_status s = grad_image_load(fixture(name), &image);
  ck_assert_msg(s == GRAD_OK, "%s: %s: %s", name, grad_status_name(s), grad_last_error());
  return image;
}

/* max |a - b| over n bytes */
static int max_diff_u8(const uint8_t *a, const uint8_t *b, size_t n) {
  int worst = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)a[i] - (int)b[i]);
    if (d > worst) worst = d;
  }
  return worst;
}

/* The synthetic pattern of make_image_fixtures.py (syn). */
static grad_image *syn_image(int w, int h, int ch) {
  uint8_t *px = malloc((size_t)w * h * ch);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < ch; c++)
        px[((size_t)y * w + x) * ch + c] =
            (uint8_t)(((x * x * 3 + y * y * 5 + x * y + c * 77) ^ (x * 7 + y * 3)) & 255);
  grad_image *image = NULL;
  ck_assert_int_eq(grad_image_from_pixels(px, w, h, ch, (size_t)w * ch, &image), GRAD_OK);
  free(px);
  return image;
}

static void assert_image_equals(const grad_image *got, const grad_image *want, const char *what,
                                int tolerance) {
  ck_assert_int_eq(grad_image_width(got), grad_image_width(want));
  ck_assert_int_eq(grad_image_height(got), grad_image_height(want));
  ck_assert_int_eq(grad_image_channels(got), grad_image_channels(want));
  size_t n = (size_t)grad_image_width(got) * grad_image_height(got) * grad_image_channels(got);
  int d = max_diff_u8(grad_image_pixels(got), grad_image_pixels(want), n);
  ck_assert_msg(d <= tolerance, "%s: max difference %d grey levels", what, d);
}

/* ---- decoding ---------------------------------------------------------- */

static const struct {
  const char *name;
  int channels;
} png_cases[] = {
    {"png_gray1", 1},       {"png_gray2", 1},        {"png_gray4", 1},
    {"png_gray8", 1},       {"png_gray8_trns", 1},   {"png_gray16", 1},
    {"png_graya8", 1},      {"png_graya16", 1},      {"png_rgb8", 3},
    {"png_rgb8_trns", 3},   {"png_rgb16", 3},        {"png_rgba8", 3},
    {"png_rgba16", 3},      {"png_pal1", 3},         {"png_pal2", 3},
    {"png_pal4", 3},        {"png_pal8", 3},         {"png_pal4_trns", 3},
    {"png_adam7_rgb8", 3},  {"png_adam7_rgba16", 3}, {"png_adam7_pal4", 3},
    {"png_adam7_gray2", 1}, {"png_pil_rgb", 3},
};

static void check_against_raw(const char *name, const char *ext, int width, int height,
                              int channels, int tolerance) {
  char file[256], raw_name[256];
  snprintf(file, sizeof file, "%s.%s", name, ext);
  snprintf(raw_name, sizeof raw_name, "%s.raw", name);
  grad_image *image = load_fixture(file);
  ck_assert_int_eq(grad_image_width(image), width);
  ck_assert_int_eq(grad_image_height(image), height);
  ck_assert_msg(grad_image_channels(image) == channels, "%s: %d channels, want %d", file,
                grad_image_channels(image), channels);
  size_t raw_size;
  unsigned char *raw = slurp(fixture(raw_name), &raw_size);
  ck_assert_ptr_nonnull(raw);
  ck_assert_uint_eq(raw_size, (size_t)width * height * channels);
  int d = max_diff_u8(grad_image_pixels(image), raw, raw_size);
  ck_assert_msg(d <= tolerance, "%s: max difference %d from the expected pixels", file, d);

  /* The memory entry point decodes the same bytes to the same pixels. */
  size_t size;
  unsigned char *data = slurp(fixture(file), &size);
  grad_image *again = NULL;
  ck_assert_int_eq(grad_image_load_memory(data, size, &again), GRAD_OK);
  assert_image_equals(again, image, file, 0);
  grad_image_free(again);
  grad_image_free(image);
  free(data);
  free(raw);
}

START_TEST(png_variants_decode_exactly) {
  for (size_t i = 0; i < sizeof png_cases / sizeof png_cases[0]; i++) {
    bool pil = strcmp(png_cases[i].name, "png_pil_rgb") == 0;
    check_against_raw(png_cases[i].name, "png", pil ? 33 : 7, pil ? 21 : 5,
                      png_cases[i].channels, 0);
  }
}
END_TEST

START_TEST(jpeg_variants_match_pil) {
  /* Same libjpeg-turbo and the same decoder settings as PIL: exact. */
  static const struct {
    const char *name;
    int channels;
  } cases[] = {{"jpeg_rgb_420", 3}, {"jpeg_rgb_422", 3}, {"jpeg_rgb_444", 3},
               {"jpeg_progressive", 3}, {"jpeg_gray", 1}, {"jpeg_cmyk", 3},
               {"jpeg_ycck", 3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_against_raw(cases[i].name, "jpg", 21, 13, cases[i].channels, 0);
}
END_TEST

START_TEST(corrupt_files_fail_cleanly) {
  static const struct {
    const char *name;
    grad_status status;
    const char *says; /* part of the message */
  } cases[] = {
      {"bad_truncated.png", GRAD_E_FORMAT, "truncated"},
      {"bad_ihdr_bitflip.png", GRAD_E_FORMAT, "CRC"},
      {"bad_signature.png", GRAD_E_FORMAT, "signature"},
      {"bad_zlib.png", GRAD_E_FORMAT, "corrupt PNG"},
      {"bad_huge.png", GRAD_E_TOO_LARGE, "100000 x 100000"},
      {"bad_wide.png", GRAD_E_TOO_LARGE, "side"},
      {"bad_zero_width.png", GRAD_E_FORMAT, "corrupt PNG"},
      {"bad_empty.png", GRAD_E_FORMAT, "empty"},
      {"bad_text.png", GRAD_E_UNSUPPORTED, "not a PNG or JPEG"},
      {"bad_truncated.jpg", GRAD_E_FORMAT, "Premature end"},
      {"bad_sof_bitflip.jpg", GRAD_E_FORMAT, "corrupt JPEG"},
      {"bad_huge.jpg", GRAD_E_TOO_LARGE, "60000 x 60000"},
      {"bad_12bit.jpg", GRAD_E_UNSUPPORTED, "precision 12"},
      {"bad_lossless.jpg", GRAD_E_UNSUPPORTED, "unsupported JPEG"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    grad_image *image = (grad_image *)1;
    grad_status s = grad_image_load(fixture(cases[i].name), &image);
    const char *msg = grad_last_error();
    ck_assert_msg(s == cases[i].status, "%s: got %s (%s), want %s", cases[i].name,
                  grad_status_name(s), msg, grad_status_name(cases[i].status));
    ck_assert_ptr_null(image);
    ck_assert_msg(strstr(msg, cases[i].name) != NULL, "message does not name the file: %s", msg);
    ck_assert_msg(strstr(msg, cases[i].says) != NULL, "%s: message '%s' lacks '%s'",
                  cases[i].name, msg, cases[i].says);
    /* From memory: same status, the message names "<memory>". */
    size_t size;
    unsigned char *data = slurp(fixture(cases[i].name), &size);
    ck_assert_int_eq(grad_image_load_memory(data, size, &image), cases[i].status);
    ck_assert_msg(strstr(grad_last_error(), "<memory>") != NULL, "%s", grad_last_error());
    free(data);
  }
}
END_TEST

START_TEST(every_truncation_fails_cleanly) {
  /* Every prefix of a PNG and of a JPEG: an error or, for a prefix that
   * still holds every pixel, the full image; never a crash or a leak. */
  const char *names[] = {"png_adam7_rgba16.png", "jpeg_progressive.jpg", "jpeg_ycck.jpg"};
  for (size_t f = 0; f < 3; f++) {
    size_t size;
    unsigned char *data = slurp(fixture(names[f]), &size);
    grad_image *full = NULL;
    ck_assert_int_eq(grad_image_load_memory(data, size, &full), GRAD_OK);
    for (size_t n = 0; n < size; n++) {
      grad_image *image = NULL;
      grad_status s = grad_image_load_memory(data, n, &image);
      if (s == GRAD_OK)
        assert_image_equals(image, full, names[f], 0);
      else
        ck_assert_msg(s == GRAD_E_FORMAT, "%s cut at %zu: %s", names[f], n, grad_status_name(s));
      grad_image_free(image);
    }
    grad_image_free(full);
    free(data);
  }
}
END_TEST

START_TEST(missing_file_and_bad_arguments) {
  grad_image *image = NULL;
  ck_assert_int_eq(grad_image_load("/nonexistent/x.png", &image), GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/x.png"));
  ck_assert_ptr_null(image);
  ck_assert_int_eq(grad_image_load(NULL, &image), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_load(fixture("png_rgb8.png"), NULL), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_load_memory(NULL, 10, &image), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_load_memory(NULL, 0, &image), GRAD_E_FORMAT);
  ck_assert_int_eq(grad_image_width(NULL), 0);
  ck_assert_ptr_null(grad_image_pixels(NULL));
  grad_image_free(NULL);
}
END_TEST

START_TEST(allocation_failures_give_nomem) {
  /* Every allocation of each decode path fails in turn: GRAD_E_NOMEM each
   * time until the decode succeeds (leaks are caught by the ASan build). */
  const char *names[] = {"png_adam7_pal4.png", "png_rgba16.png", "jpeg_cmyk.jpg",
                         "jpeg_progressive.jpg"};
  for (size_t f = 0; f < 4; f++) {
    grad_image *image = NULL;
    long n = 0;
    grad_status s;
    do {
      grad__alloc_fail_after(n++);
      s = grad_image_load(fixture(names[f]), &image);
      grad__alloc_fail_after(-1);
      if (s != GRAD_OK) {
        ck_assert_msg(s == GRAD_E_NOMEM, "%s, allocation %ld failing: %s (%s)", names[f], n - 1,
                      grad_status_name(s), grad_last_error());
        ck_assert_ptr_null(image);
      }
    } while (s != GRAD_OK && n < 1000);
    ck_assert_int_eq(s, GRAD_OK);
    ck_assert_msg(n > 2, "%s: only %ld allocations", names[f], n);
    grad_image_free(image);
  }
}
END_TEST

/* ---- pixels in, PNG out ------------------------------------------------ */

START_TEST(from_pixels_honours_stride) {
  uint8_t buf[4 * 10];
  for (int i = 0; i < 40; i++) buf[i] = (uint8_t)(i * 3 + 1);
  grad_image *image = NULL;
  ck_assert_int_eq(grad_image_from_pixels(buf, 3, 4, 3, 10, &image), GRAD_OK);
  ck_assert_int_eq(grad_image_width(image), 3);
  ck_assert_int_eq(grad_image_height(image), 4);
  ck_assert_int_eq(grad_image_channels(image), 3);
  const uint8_t *px = grad_image_pixels(image);
  for (int y = 0; y < 4; y++)
    for (int i = 0; i < 9; i++) ck_assert_uint_eq(px[y * 9 + i], buf[y * 10 + i]);
  grad_image_free(image);

  ck_assert_int_eq(grad_image_from_pixels(buf, 4, 4, 3, 10, &image), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(image);
  ck_assert_int_eq(grad_image_from_pixels(buf, 3, 4, 2, 10, &image), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_from_pixels(buf, 0, 4, 1, 10, &image), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_from_pixels(NULL, 3, 4, 1, 10, &image), GRAD_E_INVALID_ARG);
  /* Limits are checked before the pixels are read or memory is taken. */
  grad__alloc_fail_after(0);
  ck_assert_int_eq(grad_image_from_pixels(buf, GRAD_IMAGE_MAX_SIDE + 1, 1, 1,
                                          (size_t)GRAD_IMAGE_MAX_SIDE + 1, &image),
                   GRAD_E_TOO_LARGE);
  ck_assert_int_eq(grad_image_from_pixels(buf, 1 << 15, 1 << 14, 1, 1 << 15, &image),
                   GRAD_E_TOO_LARGE);
  grad__alloc_fail_after(-1);
}
END_TEST

/* Strides whose rows would reach past the end of memory are refused before
 * any pixel is read (a stride of SIZE_MAX read out of bounds once). */
START_TEST(strides_beyond_memory_are_refused) {
  uint8_t buf[16] = {0};
  grad_image *image = (grad_image *)1;
  const size_t strides[] = {SIZE_MAX, SIZE_MAX / 2, (size_t)PTRDIFF_MAX - 1};
  char path[] = "/tmp/grad-never-written.png";
  for (size_t i = 0; i < sizeof strides / sizeof *strides; i++) {
    ck_assert_int_eq(grad_image_from_pixels(buf, 2, 2, 1, strides[i], &image),
                     GRAD_E_INVALID_ARG);
    ck_assert_ptr_null(image);
    ck_assert_ptr_nonnull(strstr(grad_last_error(), "stride"));
    ck_assert_int_eq(grad_png_write(path, buf, 2, 2, 1, strides[i]), GRAD_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(grad_last_error(), path));
  }
  ck_assert_int_ne(access(path, F_OK), 0);
  /* A large stride over one row reads one row only: allowed. */
  ck_assert_int_eq(grad_image_from_pixels(buf, 2, 1, 1, (size_t)1 << 40, &image), GRAD_OK);
  grad_image_free(image);
}
END_TEST

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  if (d) closedir(d);
  return n;
}

START_TEST(png_round_trip) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/out.png", dir);
  for (int ch = 1; ch <= 4; ch++) {
    if (ch == 2) continue;
    int w = 37, h = 23;
    size_t stride = (size_t)w * ch + 5;
    uint8_t *px = malloc(stride * h);
    for (size_t i = 0; i < stride * (size_t)h; i++) px[i] = (uint8_t)(i * 7 + i / 13);
    ck_assert_int_eq(grad_png_write(path, px, w, h, ch, stride), GRAD_OK);
    grad_image *image = NULL;
    ck_assert_int_eq(grad_image_load(path, &image), GRAD_OK);
    int out_ch = ch == 1 ? 1 : 3; /* RGBA reads back as RGB */
    ck_assert_int_eq(grad_image_channels(image), out_ch);
    const uint8_t *got = grad_image_pixels(image);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < out_ch; c++)
          ck_assert_uint_eq(got[((size_t)y * w + x) * out_ch + c], px[y * stride + x * ch + c]);
    /* and grad_image_save_png writes the same pixels back */
    ck_assert_int_eq(grad_image_save_png(image, path), GRAD_OK);
    grad_image *again = NULL;
    ck_assert_int_eq(grad_image_load(path, &again), GRAD_OK);
    assert_image_equals(again, image, "save_png", 0);
    grad_image_free(again);
    grad_image_free(image);
    free(px);
  }
  ck_assert_int_eq(count_entries(dir), 1); /* no temporary files left */
  unlink(path);
  rmdir(dir);
}
END_TEST

START_TEST(png_write_failures_leave_no_file) {
  uint8_t px[12] = {0};
  ck_assert_int_eq(grad_png_write("/nonexistent/dir/x.png", px, 2, 2, 3, 6), GRAD_E_IO);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "/nonexistent/dir/x.png"));
  ck_assert_int_eq(grad_png_write("/proc/x.png", px, 2, 2, 3, 6), GRAD_E_IO);
  ck_assert_int_eq(access("/proc/x.png", F_OK), -1);
  ck_assert_int_eq(grad_png_write("x.png", px, 2, 2, 2, 6), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_png_write("x.png", px, 2, 2, 3, 5), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_png_write("x.png", NULL, 2, 2, 3, 6), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_save_png(NULL, "x.png"), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(access("x.png", F_OK), -1);

  /* Out of memory at every step: GRAD_E_NOMEM and an untouched folder. */
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/out.png", dir);
  grad_status s;
  long n = 0;
  do {
    grad__alloc_fail_after(n++);
    s = grad_png_write(path, px, 2, 2, 3, 6);
    grad__alloc_fail_after(-1);
    if (s != GRAD_OK) {
      ck_assert_msg(s == GRAD_E_NOMEM, "allocation %ld: %s", n - 1, grad_status_name(s));
      ck_assert_int_eq(count_entries(dir), 0);
    }
  } while (s != GRAD_OK && n < 1000);
  ck_assert_int_eq(s, GRAD_OK);
  ck_assert_int_eq(count_entries(dir), 1);
  unlink(path);
  rmdir(dir);
}
END_TEST

/* ---- resizing against PIL ---------------------------------------------- */

static const struct {
  int in_w, in_h, out_w, out_h;
} syn_sizes[] = {{300, 200, 64, 64}, {300, 200, 97, 33}, {120, 80, 120, 23},
                 {120, 80, 17, 80},  {40, 30, 123, 77},  {40, 30, 23, 77}};

START_TEST(resize_matches_pil_exactly) {
  const char *tags[2] = {"gray", "rgb"};
  const char *filters[2] = {"bilinear", "nearest"};
  for (int t = 0; t < 2; t++)
    for (size_t i = 0; i < sizeof syn_sizes / sizeof syn_sizes[0]; i++)
      for (int f = 0; f < 2; f++) {
        char name[128];
        snprintf(name, sizeof name, "golden_syn_%s_%dx%d_%dx%d_%s.png", tags[t],
                 syn_sizes[i].in_w, syn_sizes[i].in_h, syn_sizes[i].out_w, syn_sizes[i].out_h,
                 filters[f]);
        grad_image *src = syn_image(syn_sizes[i].in_w, syn_sizes[i].in_h, t == 0 ? 1 : 3);
        grad_image *want = load_fixture(name);
        grad_image *got = NULL;
        ck_assert_int_eq(grad_image_resize(src, syn_sizes[i].out_w, syn_sizes[i].out_h,
                                           f == 0 ? GRAD_RESIZE_BILINEAR : GRAD_RESIZE_NEAREST,
                                           &got),
                         GRAD_OK);
        assert_image_equals(got, want, name, 0);
        grad_image_free(got);
        grad_image_free(want);
        grad_image_free(src);
      }
}
END_TEST

/* Random w x h x ch pixels whose last byte is the last one before a page
 * that may not be read, so a resize reading past the image crashes. */
typedef struct guarded_image {
  struct grad_image image;
  unsigned char *map;
  size_t map_bytes;
} guarded_image;

static void guarded_make(guarded_image *g, int w, int h, int ch, unsigned *state) {
  size_t bytes = (size_t)w * h * ch, page = (size_t)sysconf(_SC_PAGESIZE);
  g->map_bytes = (bytes + page - 1) / page * page + page;
  g->map = mmap(NULL, g->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(g->map, MAP_FAILED);
  ck_assert_int_eq(mprotect(g->map + g->map_bytes - page, page, PROT_NONE), 0);
  g->image = (struct grad_image){w, h, ch, g->map + g->map_bytes - page - bytes};
  for (size_t i = 0; i < bytes; i++)
    g->image.pixels[i] = (uint8_t)((test_uniform(state) + 1) * 128);
}

/* The vector builds of the resize passes (AVX2, AVX-512, where the CPU has
 * them) give the portable loops' bytes: random images and float planes of
 * many sizes, gray and RGB, shrunk (up to beyond the VBMI pass's window) and
 * enlarged, the last outputs' taps reaching the image's last byte. */
START_TEST(resize_vector_builds_equal_portable) {
  unsigned state = 2024;
  const double factors[] = {0.3, 0.5, 0.77, 1.0, 1.3, 2.0, 2.23, 3.7, 5.6, 9.0, 17.0, 45.0, 130.0};
  const int nf = (int)(sizeof factors / sizeof factors[0]);
  const grad__isa caps[] = {GRAD__ISA_AVX2, GRAD__ISA_AVX512};
  for (int i = 0; i < 160; i++) {
    int ch = i % 2 ? 3 : 1;
    int in_w = 1 + (int)((test_uniform(&state) + 1) * 400);
    int in_h = 1 + (int)((test_uniform(&state) + 1) * 20);
    int out_w = (int)(in_w / factors[(i / 2) % nf] + 0.5);
    int out_h = i % 3 ? in_h : (int)(in_h / factors[(i / 3) % nf] + 0.5);
    out_w = out_w < 1 ? 1 : out_w, out_h = out_h < 1 ? 1 : out_h;
    if (out_w == in_w && out_h == in_h) out_w++;
    guarded_image g;
    guarded_make(&g, in_w, in_h, ch, &state);
    size_t in_n = (size_t)in_w * in_h, out_n = (size_t)out_w * out_h;
    float *plane = malloc(in_n * sizeof *plane), *want = malloc(out_n * sizeof *want);
    float *got = malloc(out_n * sizeof *got);
    for (size_t k = 0; k < in_n; k++) plane[k] = (float)(test_uniform(&state) * 100.0);
    grad_image *portable = NULL;
    grad__resize_isa_cap(GRAD__ISA_OLDER);
    grad_status s = grad_image_resize(&g.image, out_w, out_h, GRAD_RESIZE_BILINEAR, &portable);
    if (s == GRAD_OK) s = grad_plane_resize(plane, in_w, in_h, want, out_w, out_h);
    ck_assert_int_eq(s, GRAD_OK);
    for (int c = 0; c < 2; c++) {
      grad_image *vec = NULL;
      grad__resize_isa_cap(caps[c]);
      s = grad_image_resize(&g.image, out_w, out_h, GRAD_RESIZE_BILINEAR, &vec);
      if (s == GRAD_OK) s = grad_plane_resize(plane, in_w, in_h, got, out_w, out_h);
      grad__resize_isa_cap(GRAD__ISA_AVX512);
      ck_assert_int_eq(s, GRAD_OK);
      char what[96];
      snprintf(what, sizeof what, "%s: %d x %d x %d to %d x %d", c ? "AVX-512" : "AVX2", in_w,
               in_h, ch, out_w, out_h);
      assert_image_equals(vec, portable, what, 0);
      ck_assert_msg(memcmp(got, want, out_n * sizeof *got) == 0, "plane %s: bits differ", what);
      grad_image_free(vec);
    }
    grad_image_free(portable);
    munmap(g.map, g.map_bytes);
    free(plane), free(want), free(got);
  }
}
END_TEST

START_TEST(resize_same_size_copies_and_rejects_bad_sizes) {
  grad_image *src = syn_image(13, 7, 3), *out = NULL;
  ck_assert_int_eq(grad_image_resize(src, 13, 7, GRAD_RESIZE_BILINEAR, &out), GRAD_OK);
  assert_image_equals(out, src, "identity", 0);
  grad_image_free(out);
  ck_assert_int_eq(grad_image_resize(src, 0, 7, GRAD_RESIZE_BILINEAR, &out), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(out);
  ck_assert_int_eq(grad_image_resize(src, 5, 5, (grad_resize_filter)7, &out), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_resize(NULL, 5, 5, GRAD_RESIZE_NEAREST, &out), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_resize(src, 1 << 15, 1 << 14, GRAD_RESIZE_NEAREST, &out),
                   GRAD_E_TOO_LARGE);
  float tensor[3 * 4];
  ck_assert_int_eq(grad_image_to_tensor(src, 0, tensor), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_image_to_tensor(NULL, 2, tensor), GRAD_E_INVALID_ARG);
  grad_image_free(src);
}
END_TEST

static float *slurp_floats(const char *name, size_t count) {
  size_t size;
  float *data = (float *)slurp(fixture(name), &size);
  ck_assert_msg(data != NULL, "missing fixture %s", name);
  ck_assert_uint_eq(size, count * sizeof(float));
  return data;
}

static double max_diff_f32(const float *a, const float *b, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

START_TEST(resize_plane_matches_pil_float) {
  float *in = slurp_floats("golden_plane_28x28.f32", 28 * 28);
  static const int sizes[][2] = {{97, 61}, {13, 9}, {28, 57}, {5, 28}};
  for (int i = 0; i < 4; i++) {
    int w = sizes[i][0], h = sizes[i][1];
    char name[64];
    snprintf(name, sizeof name, "golden_plane_%dx%d.f32", w, h);
    float *want = slurp_floats(name, (size_t)w * h);
    float *got = malloc((size_t)w * h * sizeof *got);
    ck_assert_int_eq(grad_plane_resize(in, 28, 28, got, w, h), GRAD_OK);
    double d = max_diff_f32(got, want, (size_t)w * h);
    ck_assert_msg(d == 0.0, "%s: max difference %g", name, d); /* same operations as PIL */
    free(got);
    free(want);
  }
  float out[4];
  ck_assert_int_eq(grad_plane_resize(in, 0, 28, out, 2, 2), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_plane_resize(in, 28, 28, out, 2, -1), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_plane_resize(NULL, 28, 28, out, 2, 2), GRAD_E_INVALID_ARG);
  free(in);
}
END_TEST

/* The 8-bit resize equals PIL's and the float32 steps are torch's own
 * operations (v / 255, then (x - mean) / std), so the tensors are equal to
 * the bit. */
#define TENSOR_TOL 0.0

START_TEST(to_tensor_matches_torchvision) {
  grad_image *src = syn_image(300, 200, 3);
  size_t n = 3 * 48 * 48;
  float *want = slurp_floats("golden_syn_rgb_tensor48.f32", n);
  float *got = malloc(n * sizeof *got);
  ck_assert_int_eq(grad_image_to_tensor(src, 48, got), GRAD_OK);
  double d = max_diff_f32(got, want, n);
  ck_assert_msg(d <= TENSOR_TOL, "max difference %g from torchvision", d);
  free(got);
  free(want);
  grad_image_free(src);
}
END_TEST

START_TEST(to_tensor_replicates_gray) {
  grad_image *gray = syn_image(50, 31, 1), *rgb = NULL;
  const uint8_t *g = grad_image_pixels(gray);
  uint8_t *px = malloc(50 * 31 * 3);
  for (int i = 0; i < 50 * 31; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = g[i];
  ck_assert_int_eq(grad_image_from_pixels(px, 50, 31, 3, 150, &rgb), GRAD_OK);
  float a[3 * 20 * 20], b[3 * 20 * 20];
  ck_assert_int_eq(grad_image_to_tensor(gray, 20, a), GRAD_OK);
  ck_assert_int_eq(grad_image_to_tensor(rgb, 20, b), GRAD_OK);
  ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
  /* Channel planes differ only by the per-channel mean and std. */
  ck_assert_float_eq_tol(a[0] * 0.229f + 0.485f, a[400] * 0.224f + 0.456f, 1e-6f);
  free(px);
  grad_image_free(gray);
  grad_image_free(rgb);
}
END_TEST

/* ---- real images (skipped without ../shared/data/real) ----------------- */

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
  return h;
}

START_TEST(real_images_decode_like_pil) {
  TEST_SKIP_WITHOUT_SHARED_DATA(shared);
  FILE *list = fopen(fixture("golden_real_decode.txt"), "r");
  ck_assert_ptr_nonnull(list);
  char rel[512];
  int w, h, ch, count = 0;
  unsigned long long want;
  while (fscanf(list, "%511s %d %d %d %llx", rel, &w, &h, &ch, &want) == 5) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", shared, rel);
    grad_image *image = NULL;
    ck_assert_msg(grad_image_load(path, &image) == GRAD_OK, "%s", grad_last_error());
    ck_assert_int_eq(grad_image_width(image), w);
    ck_assert_int_eq(grad_image_height(image), h);
    ck_assert_int_eq(grad_image_channels(image), ch);
    uint64_t got = fnv1a64(grad_image_pixels(image), (size_t)w * h * ch);
    ck_assert_msg(got == want, "%s: pixels differ from PIL's decoding", rel);
    grad_image_free(image);
    count++;
  }
  fclose(list);
  ck_assert_int_eq(count, 4);
}
END_TEST

START_TEST(real_images_resize_like_pil) {
  TEST_SKIP_WITHOUT_SHARED_DATA(shared);
  static const struct {
    const char *file;
    const char *golden;
    int w, h;
    grad_resize_filter filter;
  } cases[] = {
      {"kolektorsdd/train/good/kos04_Part4.jpg", "golden_real_kos_224x224.png", 224, 224,
       GRAD_RESIZE_BILINEAR},
      {"kolektorsdd/train/good/kos04_Part4.jpg", "golden_real_kos_64x64.png", 64, 64,
       GRAD_RESIZE_BILINEAR},
      {"magnetic_tile/test/crack/exp1_num_249594.jpg", "golden_real_mt_64x64.png", 64, 64,
       GRAD_RESIZE_BILINEAR},
      {"magnetic_tile/test/crack/exp1_num_249594.jpg", "golden_real_mt_97x61.png", 97, 61,
       GRAD_RESIZE_BILINEAR},
      {"magnetic_tile/ground_truth/crack/exp1_num_249594_mask.png",
       "golden_real_mask_224x224.png", 224, 224, GRAD_RESIZE_NEAREST},
      {"magnetic_tile/ground_truth/crack/exp1_num_249594_mask.png", "golden_real_mask_64x64.png",
       64, 64, GRAD_RESIZE_NEAREST},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", shared, cases[i].file);
    grad_image *src = NULL, *got = NULL;
    ck_assert_msg(grad_image_load(path, &src) == GRAD_OK, "%s", grad_last_error());
    ck_assert_int_eq(grad_image_channels(src), 1);
    ck_assert_int_eq(grad_image_resize(src, cases[i].w, cases[i].h, cases[i].filter, &got),
                     GRAD_OK);
    grad_image *want = load_fixture(cases[i].golden);
    assert_image_equals(got, want, cases[i].golden, 0);
    grad_image_free(want);
    grad_image_free(got);
    grad_image_free(src);
  }
}
END_TEST

START_TEST(real_image_tensor_matches_torchvision) {
  TEST_SKIP_WITHOUT_SHARED_DATA(shared);
  char path[1024];
  snprintf(path, sizeof path, "%s/kolektorsdd/train/good/kos04_Part4.jpg", shared);
  grad_image *src = NULL;
  ck_assert_int_eq(grad_image_load(path, &src), GRAD_OK);
  size_t n = 3 * 32 * 32;
  float *want = slurp_floats("golden_real_kos_tensor32.f32", n);
  float *got = malloc(n * sizeof *got);
  ck_assert_int_eq(grad_image_to_tensor(src, 32, got), GRAD_OK);
  double d = max_diff_f32(got, want, n);
  ck_assert_msg(d <= TENSOR_TOL, "max difference %g from torchvision", d);
  free(got);
  free(want);
  grad_image_free(src);
}
END_TEST

int main(void) {
  Suite *s = suite_create("image");
  TCase *tc = tcase_create("image");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, png_variants_decode_exactly);
  tcase_add_test(tc, jpeg_variants_match_pil);
  tcase_add_test(tc, corrupt_files_fail_cleanly);
  tcase_add_test(tc, every_truncation_fails_cleanly);
  tcase_add_test(tc, missing_file_and_bad_arguments);
  tcase_add_test(tc, allocation_failures_give_nomem);
  tcase_add_test(tc, from_pixels_honours_stride);
  tcase_add_test(tc, strides_beyond_memory_are_refused);
  tcase_add_test(tc, png_round_trip);
  tcase_add_test(tc, png_write_failures_leave_no_file);
  tcase_add_test(tc, resize_matches_pil_exactly);
  tcase_add_test(tc, resize_vector_builds_equal_portable);
  tcase_add_test(tc, resize_same_size_copies_and_rejects_bad_sizes);
  tcase_add_test(tc, resize_plane_matches_pil_float);
  tcase_add_test(tc, to_tensor_matches_torchvision);
  tcase_add_test(tc, to_tensor_replicates_gray);
  tcase_add_test(tc, real_images_decode_like_pil);
  tcase_add_test(tc, real_images_resize_like_pil);
  tcase_add_test(tc, real_image_tensor_matches_torchvision);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
