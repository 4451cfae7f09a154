/*
 * libFuzzer target: safetensors bytes through grad__st_open_memory, then
 * every query and every F32/F16/BF16 tensor through grad__st_read_f32 (with
 * its own shape, a wrong shape and the finiteness check). Whatever opens must
 * be self-consistent: tensors inside the buffer, tiling the data section,
 * findable by name. Any broken contract aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char label[] = "fuzz.safetensors";

static void check_failure(grad_status s) {
  if (s == GRAD_OK) abort();
  const char *message = grad_last_error();
  if (strncmp(message, label, sizeof label - 1) != 0) abort(); /* names the file */
}

static void read_tensor(const grad__st_file *file, const grad__st_tensor *t) {
  if (t->dtype == GRAD__DTYPE_OTHER) {
    float dummy;
    if (grad__st_read_f32(file, t->name, t->ndim, t->shape, false, &dummy) !=
        GRAD_E_UNSUPPORTED)
      abort();
    return;
  }
  float *out = malloc(t->count ? t->count * sizeof *out : 1);
  if (!out) abort();
  grad_status s = grad__st_read_f32(file, t->name, t->ndim, t->shape, false, out);
  if (s != GRAD_OK) abort();
  s = grad__st_read_f32(file, t->name, t->ndim, t->shape, true, out);
  if (s != GRAD_OK && s != GRAD_E_NUMERIC) abort();
  if (s != GRAD_OK) check_failure(s);
  int64_t wrong[GRAD__ST_MAX_DIMS + 1];
  memcpy(wrong, t->shape, sizeof t->shape);
  wrong[t->ndim] = 2;
  if (grad__st_read_f32(file, t->name, t->ndim + 1, wrong, false, out) != GRAD_E_SHAPE) abort();
  check_failure(GRAD_E_SHAPE);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  grad__st_file *file = (grad__st_file *)1; /* must come back NULL on failure */
  grad_status s = grad__st_open_memory(data, size, label, &file);
  if (s != GRAD_OK) {
    if (file != NULL) abort();
    check_failure(s);
    return 0;
  }
  size_t n = grad__st_count(file), covered = grad__st_data_start(file);
  if (grad__st_file_size(file) != size || covered > size) abort();
  for (size_t i = 0; i < n; i++) {
    const grad__st_tensor *t = grad__st_at(file, i);
    if (!t || t->ndim < 0 || t->ndim > GRAD__ST_MAX_DIMS) abort();
    if (t->offset != covered || t->nbytes > size - t->offset) abort();
    covered += t->nbytes;
    if (grad__st_find(file, t->name) != t) abort();
    const volatile uint8_t *raw = grad__st_raw(file, t);
    if (t->nbytes) (void)raw[t->nbytes - 1];
    char shape[12];
    grad__st_format_shape(t->ndim, t->shape, shape, sizeof shape);
    grad__st_format_shape(t->ndim, t->shape, shape, 1);
    read_tensor(file, t);
  }
  if (covered != size || grad__st_at(file, n) != NULL) abort();
  if (grad__st_find(file, "\x01 no such tensor") != NULL) abort();
  if (grad__st_read_f32(file, "\x01 no such tensor", 0, NULL, false, NULL) != GRAD_E_MISSING)
    abort();
  for (size_t i = 0; i < grad__st_meta_count(file); i++) {
    const char *key, *value;
    grad__st_meta_at(file, i, &key, &value);
    if (!key || !value || !grad__st_meta(file, key)) abort();
  }
  grad__st_close(file);
  return 0;
}
