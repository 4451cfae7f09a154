/*
 * libFuzzer target: PNG or JPEG bytes through grad_image_load_memory, and
 * every image that decodes through the resizer and grad_image_to_tensor.
 * Built twice (see meson.build): with FUZZ_PNG it only looks at inputs that
 * start with the PNG signature, with FUZZ_JPEG at those that start with the
 * JPEG SOI marker, so each run spends its time inside one decoder. A broken
 * contract (an error without a message, an output left set on failure, an
 * impossible image) aborts, which libFuzzer reports as a crash.
 *
 * libjpeg fills a scan cut short by a marker with gray and only warns (as
 * PIL does), so a 400-byte JPEG can declare and decode 2^28 pixels; to keep
 * each run short, JPEGs declaring between 2^20 pixels and the
 * library's limit are skipped (those above it still run: they must fail).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <grad/image.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if defined(FUZZ_PNG)
static const uint8_t magic[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
#elif defined(FUZZ_JPEG)
static const uint8_t magic[] = {0xFF, 0xD8};
#else
#error "define FUZZ_PNG or FUZZ_JPEG"
#endif

/* Pixel counts up to this also go through resizing and normalisation;
 * larger images would only make each run slow. */
enum { RESIZE_MAX_PIXELS = 1 << 16, TENSOR_SIZE = 24 };

/* Keeps the pixel reads from being optimised away. */
volatile unsigned pixel_sum;

static void exercise(const grad_image *image) {
  int w = grad_image_width(image), h = grad_image_height(image);
  int c = grad_image_channels(image);
  if (w <= 0 || h <= 0 || (c != 1 && c != 3) || !grad_image_pixels(image)) abort();
  /* Reading every pixel lets ASan see an image smaller than it claims. */
  const uint8_t *p = grad_image_pixels(image);
  size_t n = (size_t)w * (size_t)h * (size_t)c;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) sum += p[i];
  pixel_sum = sum;
  if ((size_t)w * (size_t)h > RESIZE_MAX_PIXELS) return;

  static float tensor[3 * TENSOR_SIZE * TENSOR_SIZE];
  if (grad_image_to_tensor(image, TENSOR_SIZE, tensor) != GRAD_OK) abort();
  grad_image *resized = NULL;
  if (grad_image_resize(image, w / 3 + 1, h + 2, GRAD_RESIZE_BILINEAR, &resized) != GRAD_OK)
    abort();
  grad_image_free(resized);
  resized = NULL;
  if (grad_image_resize(image, w + 5, h / 2 + 1, GRAD_RESIZE_NEAREST, &resized) != GRAD_OK)
    abort();
  grad_image_free(resized);
}

/* The library's own budgets keep each input cheap: 2^20 pixels (the
 * fuzzer's 2.5 GB and 10 s limits are for bugs, not for big valid images),
 * the default scan, density and PNG-surplus budgets. Before, the JPEG target
 * had to skip inputs declaring more than 2^20 pixels itself. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  grad_image_limits limits;
  grad_image_limits_init(&limits);
  limits.max_pixels = 1u << 20;
  if (grad_image_limits_set(&limits) != GRAD_OK) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < sizeof magic || memcmp(data, magic, sizeof magic) != 0) return 0;
  grad_image *image = (grad_image *)1; /* must come back NULL on failure */
  grad_status s = grad_image_load_memory(data, size, &image);
  if (s != GRAD_OK) {
    if (image != NULL) abort();
    if (s != GRAD_E_FORMAT && s != GRAD_E_UNSUPPORTED && s != GRAD_E_TOO_LARGE &&
        s != GRAD_E_NOMEM)
      abort();
    const char *message = grad_last_error();
    if (strncmp(message, "<memory>", 8) != 0) abort(); /* names the culprit */
    return 0;
  }
  exercise(image);
  grad_image_free(image);
  return 0;
}
