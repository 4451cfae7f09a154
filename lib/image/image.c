/* The image handle: size checks, creation from pixels, accessors, free.
 * Loading from files and memory is image_decode.c's, which calls these. */
#include <string.h>

#include "image_internal.h"

grad_status grad__image_check_size(const char *name, uint64_t width, uint64_t height) {
  if (width == 0 || height == 0)
    return grad__fail(GRAD_E_FORMAT, "%s: image declares a zero size (%llu x %llu)", name,
                      (unsigned long long)width, (unsigned long long)height);
  if (width > GRAD_IMAGE_MAX_SIDE || height > GRAD_IMAGE_MAX_SIDE)
    return grad__fail(GRAD_E_TOO_LARGE,
                      "%s: image of %llu x %llu pixels has a side over the limit of %d", name,
                      (unsigned long long)width, (unsigned long long)height,
                      GRAD_IMAGE_MAX_SIDE);
  /* Both sides are <= 2^20, so the product cannot overflow. */
  uint64_t limit = grad__image_max_pixels();
  if (width * height > limit)
    return grad__fail(GRAD_E_TOO_LARGE,
                      "%s: image of %llu x %llu pixels is over the limit of %llu pixels "
                      "(max_pixels: raise it with grad_image_limits_set, up to %zu)",
                      name, (unsigned long long)width, (unsigned long long)height,
                      (unsigned long long)limit, (size_t)GRAD_IMAGE_MAX_PIXELS);
  return GRAD_OK;
}

grad_status grad__pixels_check_layout(const char *caller, const uint8_t *pixels, int width,
                                      int height, int channels, size_t stride) {
  size_t row = (size_t)width * (size_t)channels, span;
  if (stride < row)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: stride %zu is less than width * channels = %zu",
                      caller, stride, row);
  /* The rows span (height - 1) * stride + row bytes from pixels: that must
   * be a size some object can have (at most PTRDIFF_MAX), without wrapping. */
  if (!grad__mul_size((size_t)height - 1, stride, &span) || span > PTRDIFF_MAX - row ||
      (uintptr_t)pixels > UINTPTR_MAX - (span + row))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "%s: stride %zu with %d rows of %zu bytes spans more memory than exists",
                      caller, stride, height, row);
  return GRAD_OK;
}

grad_status grad__image_new(const char *name, int width, int height, int channels,
                            grad_image **out) {
  *out = NULL;
  size_t bytes = (size_t)width * (size_t)height * (size_t)channels;
  grad_image *image = grad__malloc(sizeof *image + bytes);
  if (!image)
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory for a %d x %d x %d image", name, width,
                      height, channels);
  image->width = width;
  image->height = height;
  image->channels = channels;
  image->pixels = (uint8_t *)(image + 1);
  *out = image;
  return GRAD_OK;
}

grad_status grad_image_from_pixels(const uint8_t *pixels, int width, int height, int channels,
                                   size_t stride, grad_image **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_from_pixels: out is NULL");
  *out = NULL;
  if (!pixels) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_from_pixels: pixels is NULL");
  if (channels != 1 && channels != 3)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_image_from_pixels: channels is %d, must be 1 (gray) or 3 (RGB)",
                      channels);
  if (width <= 0 || height <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_image_from_pixels: size %d x %d is not positive",
                      width, height);
  grad_status s = grad__image_check_size("grad_image_from_pixels", (uint64_t)width,
                                         (uint64_t)height);
  if (s != GRAD_OK) return s;
  s = grad__pixels_check_layout("grad_image_from_pixels", pixels, width, height, channels,
                                stride);
  if (s != GRAD_OK) return s;
  size_t row = (size_t)width * (size_t)channels;
  grad_image *image;
  s = grad__image_new("grad_image_from_pixels", width, height, channels, &image);
  if (s != GRAD_OK) return s;
  for (int y = 0; y < height; y++)
    memcpy(image->pixels + (size_t)y * row, pixels + (size_t)y * stride, row);
  *out = image;
  return GRAD_OK;
}

void grad_image_free(grad_image *image) { grad__free(image); }

int grad_image_width(const grad_image *image) { return image ? image->width : 0; }
int grad_image_height(const grad_image *image) { return image ? image->height : 0; }
int grad_image_channels(const grad_image *image) { return image ? image->channels : 0; }
const uint8_t *grad_image_pixels(const grad_image *image) { return image ? image->pixels : NULL; }
