/*
 * The libpng glue shared by PNG decoding and writing: libpng's errors
 * become a message and a longjmp back to the caller's setjmp, its warnings
 * are ignored, and its memory comes from grad__malloc (so allocation-failure
 * tests reach it), with a failed allocation told apart from bad data.
 */
#ifndef GRAD_PNG_GLUE_H
#define GRAD_PNG_GLUE_H

#include <stdbool.h>

#include <png.h>

typedef struct grad__png_status {
  bool out_of_memory;  /* an allocation failed (not the data's fault) */
  char message[256];   /* libpng's last error message */
} grad__png_status;

/* A libpng read or write struct whose errors and allocations report to
 * status; NULL when out of memory. Destroy with png_destroy_*_struct. */
png_structp grad__png_create_read(grad__png_status *status);
png_structp grad__png_create_write(grad__png_status *status);

#endif
