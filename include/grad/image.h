/* libgrad: image decoding, encoding, resizing and normalisation (docs/method.md section 1). */
#ifndef GRAD_IMAGE_H
#define GRAD_IMAGE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A decoded 8-bit image: 1 channel (gray) or 3 channels (RGB), rows packed
 * (stride = width * channels). Alpha is dropped, palettes expanded, 16-bit
 * samples reduced to 8 bits, CMYK JPEG converted to RGB.
 *
 * An image is immutable once made: any number of threads may read it at
 * once. Every call that makes an image sets *out to NULL first and refuses
 * NULL arguments with GRAD_E_INVALID_ARG; getters return 0 or NULL for a
 * NULL image; the pixels belong to the image (valid until grad_image_free),
 * new images to the caller.
 */
typedef struct grad_image grad_image;

/* The most pixels grad_image_limits.max_pixels may be raised to (the
 * library's arithmetic is sized for it). */
#define GRAD_IMAGE_MAX_PIXELS ((size_t)1 << 28)

/* Images wider or taller than this are refused with GRAD_E_TOO_LARGE too. */
#define GRAD_IMAGE_MAX_SIDE (1 << 20)

/*
 * Budgets of image decoding and scoring, process-wide; each is checked
 * before the memory or work it bounds is spent, and exceeding one gives
 * GRAD_E_TOO_LARGE with a message naming the field. docs/reliability.md
 * explains each default.
 */
typedef struct grad_image_limits {
  size_t struct_size;             /* sizeof(grad_image_limits), set by _init */
  /* Pixels of an image (decoded, made from pixels, or scored). Default
   * 2^26 (8192 x 8192): about 0.2 GB decoded, 0.7 GB to score. At most
   * GRAD_IMAGE_MAX_PIXELS. */
  uint64_t max_pixels;
  /* Declared pixels per byte of compressed file (plus 65536): more means a
   * file that cannot hold what it declares. Default 16384. */
  uint32_t max_pixels_per_byte;
  /* Scans of a progressive JPEG (each a pass over the whole image).
   * Default 100; encoders write about 10. */
  uint32_t max_jpeg_scans;
  /* Compressed PNG image data (IDAT) beyond what the pixels can need
   * (their bytes + 1/8, doubled when interlaced): libpng inflates such a
   * surplus to discard it. Default 65536 bytes. */
  uint64_t max_png_surplus_bytes;
} grad_image_limits;

/* Fills limits with the defaults above. */
GRAD_API void grad_image_limits_init(grad_image_limits *limits);
/* Sets the limits of the process (NULL: the defaults again); later calls
 * in any thread use them. GRAD_E_INVALID_ARG (nothing changed) for a zero
 * field, max_pixels above GRAD_IMAGE_MAX_PIXELS or a bad struct_size. */
GRAD_API GRAD_NODISCARD grad_status grad_image_limits_set(const grad_image_limits *limits);
/* The limits in force. */
GRAD_API void grad_image_limits_get(grad_image_limits *limits);

/*
 * Decodes a PNG or JPEG file (detected from its content, not its name) into
 * a new image (*out; free it with grad_image_free). The conversion follows
 * PIL's Image.convert("RGB") (see docs/images.md): gray and gray+alpha give
 * 1 channel, everything else 3. Errors, with *out set to NULL:
 * GRAD_E_IO (missing or unreadable file), GRAD_E_FORMAT (corrupt or
 * truncated data), GRAD_E_UNSUPPORTED (neither PNG nor JPEG, or a variant
 * such as 12-bit JPEG), GRAD_E_TOO_LARGE (beyond a grad_image_limits
 * budget or GRAD_IMAGE_MAX_SIDE), GRAD_E_NOMEM. Thread-safe; never prints.
 */
GRAD_API GRAD_NODISCARD grad_status grad_image_load(const char *path, grad_image **out);

/* Decodes a PNG or JPEG held in memory, as grad_image_load; messages name
 * "<memory>". data is only read during the call. */
GRAD_API GRAD_NODISCARD grad_status grad_image_load_memory(const void *data, size_t size,
                                                           grad_image **out);

/*
 * Copies a caller's raw 8-bit pixels: channels is 1 (gray) or 3 (RGB),
 * stride is the distance in bytes between rows (>= width * channels).
 */
GRAD_API GRAD_NODISCARD grad_status grad_image_from_pixels(const uint8_t *pixels, int width,
                                                           int height, int channels,
                                                           size_t stride, grad_image **out);

/* Frees the image; NULL is a no-op. */
GRAD_API void grad_image_free(grad_image *image);

/* Accessors; 0 (or NULL) for a NULL image. */
GRAD_API int grad_image_width(const grad_image *image);
GRAD_API int grad_image_height(const grad_image *image);
GRAD_API int grad_image_channels(const grad_image *image);
/* Row-major pixels, width * channels bytes per row; owned by the image. */
GRAD_API const uint8_t *grad_image_pixels(const grad_image *image);

/*
 * Writes an 8-bit PNG (channels 1 = gray, 3 = RGB, 4 = RGBA) atomically:
 * the target is replaced only when the whole file has been written.
 */
GRAD_API GRAD_NODISCARD grad_status grad_png_write(const char *path, const uint8_t *pixels,
                                                   int width, int height, int channels,
                                                   size_t stride);

/* grad_png_write of a grad_image. */
GRAD_API GRAD_NODISCARD grad_status grad_image_save_png(const grad_image *image,
                                                        const char *path);

/*
 * The network input: the image resized (whole image, no crop) to
 * size x size with the antialiased bilinear filter of PIL's BILINEAR
 * resize, scaled to [0,1] and normalised with the ImageNet mean and std, as
 * 3 x size x size floats in C,H,W order (gray is replicated to 3 channels).
 * out must hold 3 * size * size floats.
 */
GRAD_API GRAD_NODISCARD grad_status grad_image_to_tensor(const grad_image *image, int size,
                                                         float *out);

/* How grad_image_resize samples. */
typedef enum grad_resize_filter {
  GRAD_RESIZE_BILINEAR = 0,  /* antialiased triangle filter, as PIL BILINEAR */
  GRAD_RESIZE_NEAREST = 1    /* nearest neighbour, for masks */
} grad_resize_filter;

/*
 * A new image of width x height with the same channels, equal byte for byte
 * to PIL's Image.resize((width, height), BILINEAR or NEAREST).
 */
GRAD_API GRAD_NODISCARD grad_status grad_image_resize(const grad_image *image, int width,
                                                      int height, grad_resize_filter filter,
                                                      grad_image **out);

/*
 * Resizes a float plane (one channel, row-major) of in_w x in_h to
 * out_w x out_h with the antialiased bilinear filter (as PIL's BILINEAR on a
 * mode "F" image: no rounding); used for anomaly maps. in and out must not
 * overlap.
 */
GRAD_API GRAD_NODISCARD grad_status grad_plane_resize(const float *in, int in_w, int in_h,
                                                      float *out, int out_w, int out_h);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_IMAGE_H */
