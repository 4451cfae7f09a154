/*
 * 8-bit PNG writing. The file is encoded in memory first and then saved
 * with grad__write_file_atomic, so an encoder error, a full disk or a crash
 * never leaves a partial PNG behind.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#include "fileio.h"
#include "image_internal.h"
#include "png_glue.h"

typedef struct png_sink {
  const char *path;
  png_structp png;
  png_infop info;
  grad__png_status status; /* libpng's error message; out of memory also from sink_write */
  unsigned char *data; /* the encoded file */
  size_t size;
  size_t capacity;
  png_bytep *rows;
} png_sink;

static void sink_write(png_structp png, png_bytep bytes, size_t count) {
  png_sink *sink = png_get_io_ptr(png);
  if (count > sink->capacity - sink->size) {
    size_t capacity = sink->capacity ? sink->capacity : 4096;
    while (capacity - sink->size < count) {
      if (capacity > SIZE_MAX / 2) png_error(png, "encoded PNG too large");
      capacity *= 2;
    }
    unsigned char *grown = grad__realloc(sink->data, capacity);
    if (!grown) {
      sink->status.out_of_memory = true;
      png_error(png, "out of memory");
    }
    sink->data = grown;
    sink->capacity = capacity;
  }
  memcpy(sink->data + sink->size, bytes, count);
  sink->size += count;
}

static void sink_flush(png_structp png) { (void)png; }

static grad_status sink_encode(png_sink *sink, const uint8_t *pixels, int width, int height,
                               int channels, size_t stride) {
  if (setjmp(png_jmpbuf(sink->png))) {
    if (sink->status.out_of_memory)
      return grad__fail(GRAD_E_NOMEM, "%s: out of memory encoding PNG", sink->path);
    return grad__fail(GRAD_E_INTERNAL, "%s: PNG encoder failed: %s", sink->path,
                      sink->status.message);
  }
  static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
                                     PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_write_fn(sink->png, sink, sink_write, sink_flush);
  png_set_IHDR(sink->png, sink->info, (png_uint_32)width, (png_uint_32)height, 8,
               color_types[channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  sink->rows = grad__malloc_array((size_t)height, sizeof *sink->rows);
  if (!sink->rows) return grad__fail(GRAD_E_NOMEM, "%s: out of memory encoding PNG", sink->path);
  /* libpng takes non-const rows but only reads them when writing. */
  for (int y = 0; y < height; y++)
    sink->rows[y] = (png_bytep)(uintptr_t)(pixels + (size_t)y * stride);
  png_set_rows(sink->png, sink->info, sink->rows);
  png_write_png(sink->png, sink->info, PNG_TRANSFORM_IDENTITY, NULL);
  return GRAD_OK;
}

grad_status grad_png_write(const char *path, const uint8_t *pixels, int width, int height,
                           int channels, size_t stride) {
  if (!path || !*path) return grad__fail(GRAD_E_INVALID_ARG, "grad_png_write: empty path");
  if (!pixels) return grad__fail(GRAD_E_INVALID_ARG, "grad_png_write: %s: pixels is NULL", path);
  if (channels != 1 && channels != 3 && channels != 4)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "grad_png_write: %s: channels is %d, must be 1 (gray), 3 (RGB) or 4 (RGBA)",
                      path, channels);
  if (width <= 0 || height <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_png_write: %s: size %d x %d is not positive", path,
                      width, height);
  grad_status s = grad__image_check_size(path, (uint64_t)width, (uint64_t)height);
  if (s != GRAD_OK) return s;
  s = grad__pixels_check_layout(path, pixels, width, height, channels, stride);
  if (s != GRAD_OK) return grad__fail_context(s, "grad_png_write");

  png_sink sink;
  memset(&sink, 0, sizeof sink);
  sink.path = path;
  sink.png = grad__png_create_write(&sink.status);
  if (sink.png) sink.info = png_create_info_struct(sink.png);
  if (!sink.png || !sink.info)
    s = grad__fail(GRAD_E_NOMEM, "%s: out of memory starting the PNG encoder", path);
  else
    s = sink_encode(&sink, pixels, width, height, channels, stride);
  if (sink.png) png_destroy_write_struct(&sink.png, sink.info ? &sink.info : NULL);
  grad__free(sink.rows);
  if (s == GRAD_OK) s = grad__write_file_atomic(path, sink.data, sink.size);
  grad__free(sink.data);
  return s;
}

grad_status grad_image_save_png(const grad_image *image, const char *path) {
  if (!image) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_save_png: image is NULL");
  return grad_png_write(path, image->pixels, image->width, image->height, image->channels,
                        (size_t)image->width * (size_t)image->channels);
}
