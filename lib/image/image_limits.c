/* The process-wide decoding and scoring budgets (grad_image_limits). */
#include <stdatomic.h>
#include <string.h>

#include "image_internal.h"

enum {
  DEFAULT_PIXELS_PER_BYTE = 16384,
  DEFAULT_JPEG_SCANS = 100,
  DEFAULT_PNG_SURPLUS = 65536,
};
#define DEFAULT_MAX_PIXELS ((uint64_t)1 << 26)

/* Each field on its own: a reader may see a mix of two sets while another
 * thread sets them, each value valid. */
static _Atomic uint64_t max_pixels = DEFAULT_MAX_PIXELS;
static _Atomic uint32_t max_pixels_per_byte = DEFAULT_PIXELS_PER_BYTE;
static _Atomic uint32_t max_jpeg_scans = DEFAULT_JPEG_SCANS;
static _Atomic uint64_t max_png_surplus = DEFAULT_PNG_SURPLUS;

void grad_image_limits_init(grad_image_limits *limits) {
  if (!limits) return;
  memset(limits, 0, sizeof *limits);
  limits->struct_size = sizeof *limits;
  limits->max_pixels = DEFAULT_MAX_PIXELS;
  limits->max_pixels_per_byte = DEFAULT_PIXELS_PER_BYTE;
  limits->max_jpeg_scans = DEFAULT_JPEG_SCANS;
  limits->max_png_surplus_bytes = DEFAULT_PNG_SURPLUS;
}

grad_status grad_image_limits_set(const grad_image_limits *limits) {
  grad_image_limits defaults;
  grad_image_limits_init(&defaults);
  if (!limits) limits = &defaults;
  if (limits->struct_size != sizeof *limits)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_image_limits_set: struct_size %zu; fill the "
                      "limits with grad_image_limits_init", limits->struct_size);
  if (limits->max_pixels == 0 || limits->max_pixels > GRAD_IMAGE_MAX_PIXELS ||
      limits->max_pixels_per_byte == 0 || limits->max_jpeg_scans == 0)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_image_limits_set: max_pixels %llu must be in [1, %zu]; "
                      "max_pixels_per_byte %u and max_jpeg_scans %u must be positive",
                      (unsigned long long)limits->max_pixels, (size_t)GRAD_IMAGE_MAX_PIXELS,
                      limits->max_pixels_per_byte, limits->max_jpeg_scans);
  atomic_store(&max_pixels, limits->max_pixels);
  atomic_store(&max_pixels_per_byte, limits->max_pixels_per_byte);
  atomic_store(&max_jpeg_scans, limits->max_jpeg_scans);
  atomic_store(&max_png_surplus, limits->max_png_surplus_bytes);
  return GRAD_OK;
}

void grad_image_limits_get(grad_image_limits *limits) {
  if (!limits) return;
  grad_image_limits_init(limits);
  limits->max_pixels = atomic_load(&max_pixels);
  limits->max_pixels_per_byte = atomic_load(&max_pixels_per_byte);
  limits->max_jpeg_scans = atomic_load(&max_jpeg_scans);
  limits->max_png_surplus_bytes = atomic_load(&max_png_surplus);
}

uint64_t grad__image_max_pixels(void) { return atomic_load(&max_pixels); }
uint32_t grad__jpeg_max_scans(void) { return atomic_load(&max_jpeg_scans); }
uint64_t grad__png_max_surplus(void) { return atomic_load(&max_png_surplus); }

grad_status grad__image_check_density(const char *name, uint64_t width, uint64_t height,
                                      size_t file_bytes) {
  uint32_t per_byte = atomic_load(&max_pixels_per_byte);
  if ((double)width * (double)height > (double)per_byte * (double)file_bytes + 65536.0)
    return grad__fail(GRAD_E_TOO_LARGE,
                      "%s: declares %llu x %llu pixels in only %zu bytes, more than the limit "
                      "of %u pixels a byte (max_pixels_per_byte: raise it with "
                      "grad_image_limits_set)",
                      name, (unsigned long long)width, (unsigned long long)height, file_bytes,
                      per_byte);
  return GRAD_OK;
}
