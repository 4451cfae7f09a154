/* The libpng callbacks shared by decoding and writing (png_glue.h). */
#include <stdio.h>

#include "core.h"
#include "png_glue.h"

static void on_error(png_structp png, png_const_charp message) {
  grad__png_status *status = png_get_error_ptr(png);
  snprintf(status->message, sizeof status->message, "%s", message);
  png_longjmp(png, 1);
}

/* Warnings (bad ancillary chunks, benign errors) do not stop the work. */
static void on_warning(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;
}

static png_voidp on_alloc(png_structp png, png_alloc_size_t bytes) {
  void *p = grad__malloc(bytes);
  if (!p) ((grad__png_status *)png_get_mem_ptr(png))->out_of_memory = true;
  return p;
}

static void on_free(png_structp png, png_voidp p) {
  (void)png;
  grad__free(p);
}

png_structp grad__png_create_read(grad__png_status *status) {
  return png_create_read_struct_2(PNG_LIBPNG_VER_STRING, status, on_error, on_warning, status,
                                  on_alloc, on_free);
}

png_structp grad__png_create_write(grad__png_status *status) {
  return png_create_write_struct_2(PNG_LIBPNG_VER_STRING, status, on_error, on_warning, status,
                                   on_alloc, on_free);
}
