/*
 * Internal side of the image API: the image struct and the helpers the
 * decoders, the writer and the resizer share.
 */
#ifndef GRAD_IMAGE_INTERNAL_H
#define GRAD_IMAGE_INTERNAL_H

#include <grad/image.h>

#include "core.h"

/* One allocation: the struct followed by its packed pixel rows. */
struct grad_image {
  int width;
  int height;
  int channels; /* 1 (gray) or 3 (RGB) */
  uint8_t *pixels;
};

/*
 * GRAD_OK when a width x height image is within GRAD_IMAGE_MAX_SIDE and
 * the max_pixels limit; GRAD_E_TOO_LARGE (or GRAD_E_FORMAT for a zero
 * side) with a message naming `name` otherwise. Decoders call it on the
 * declared size before allocating anything that grows with it.
 */
grad_status grad__image_check_size(const char *name, uint64_t width, uint64_t height);

/* GRAD_E_INVALID_ARG (naming caller) unless height rows of width * channels
 * bytes, stride bytes apart from pixels, are a layout memory can hold. */
grad_status grad__pixels_check_layout(const char *caller, const uint8_t *pixels, int width,
                                      int height, int channels, size_t stride);

/* The budgets in force (grad_image_limits). */
uint64_t grad__image_max_pixels(void);
uint32_t grad__jpeg_max_scans(void);
uint64_t grad__png_max_surplus(void);
/* GRAD_E_TOO_LARGE when width x height is more than max_pixels_per_byte
 * times file_bytes (+ 65536): a file that cannot hold what it declares. */
grad_status grad__image_check_density(const char *name, uint64_t width, uint64_t height,
                                      size_t file_bytes);

/* A new uninitialised image; the size must have passed the check above. */
grad_status grad__image_new(const char *name, int width, int height, int channels,
                            grad_image **out);

/* Decodes PNG or JPEG data; `name` (a path or "<memory>") is used in messages. */
grad_status grad__image_decode(const unsigned char *data, size_t size, const char *name,
                               grad_image **out);
grad_status grad__png_decode(const unsigned char *data, size_t size, const char *name,
                             grad_image **out);
grad_status grad__jpeg_decode(const unsigned char *data, size_t size, const char *name,
                              grad_image **out);

#endif /* GRAD_IMAGE_INTERNAL_H */
