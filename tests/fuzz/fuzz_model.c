/*
 * libFuzzer target: model files through grad_model_load, then scoring.
 *
 * A model file is megabytes of weights behind a JSON header of a few KB,
 * and mutating the weights teaches little, so the input is mostly the
 * header: when it ends before the data its header declares, the rest is
 * taken from a real model file (GRAD_FUZZ_MODEL_BASE, made by
 * make_model_seed), byte for byte from the start of its data section. An
 * unchanged header thus rebuilds the real model, and mutations explore
 * names, shapes, dtypes, offsets and metadata against real-looking data.
 * The loader takes a path, so each file goes to one private temporary file.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grad/grad.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Files are completed up to this size; larger declared data is left short. */
enum { MAX_FILE = 64 << 20 };

static char path[64];
static unsigned char *base, *file;
static size_t base_size, base_data;

static void remove_file(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  snprintf(path, sizeof path, "/tmp/grad-fuzz-model-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) abort();
  close(fd);
  atexit(remove_file);
  file = malloc(MAX_FILE);
  const char *base_path = getenv("GRAD_FUZZ_MODEL_BASE");
  FILE *f = base_path ? fopen(base_path, "rb") : NULL;
  if (!file || (base_path && !f)) abort();
  if (f) {
    fseek(f, 0, SEEK_END);
    base_size = (size_t)ftell(f);
    rewind(f);
    base = malloc(base_size);
    if (!base || fread(base, 1, base_size, f) != base_size) abort();
    fclose(f);
    size_t n = 0;
    for (int i = 7; i >= 0 && base_size >= 8; i--) n = n << 8 | base[i];
    base_data = 8 + n;
  }
  return 0;
}

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* The end of the data section the header declares (0 when unreadable). */
static size_t declared_data_end(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  uint64_t n = le64(data);
  if (n > size - 8) return 0;
  json_t *root = json_loadb((const char *)data + 8, (size_t)n, 0, NULL);
  if (!root) return 0;
  size_t end = 0;
  const char *key;
  json_t *value;
  json_object_foreach(root, key, value) {
    json_t *offsets = json_object_get(value, "data_offsets");
    json_t *last = json_array_get(offsets, 1);
    if (json_is_integer(last) && json_integer_value(last) > 0 &&
        (uint64_t)json_integer_value(last) < MAX_FILE)
      if ((size_t)json_integer_value(last) > end) end = (size_t)json_integer_value(last);
  }
  json_decref(root);
  return 8 + (size_t)n + end;
}

static void score_once(const grad_model *model) {
  int s = grad_model_input_size(model);
  if (s <= 0) abort();
  grad_context *ctx = NULL;
  grad_status st = grad_context_create(model, &ctx);
  if (st != GRAD_OK) {
    if (st != GRAD_E_NOMEM) abort();
    return;
  }
  if (s <= 128) {
    uint8_t px[40 * 30];
    for (int i = 0; i < 40 * 30; i++) px[i] = (uint8_t)(i * 7);
    grad_image *image = NULL;
    grad_result *result = NULL;
    if (grad_image_from_pixels(px, 40, 30, 1, 40, &image) != GRAD_OK) abort();
    st = grad_model_score(model, ctx, image, &result);
    if (st == GRAD_OK && (grad_result_width(result) != 40 || grad_result_height(result) != 30))
      abort();
    grad_result_free(result);
    grad_image_free(image);
  }
  grad_context_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t total = size < MAX_FILE ? size : MAX_FILE;
  memcpy(file, data, total);
  size_t end = declared_data_end(data, total);
  if (end > total) { /* complete the data section from the real model */
    size_t start = 8 + (size_t)le64(data);
    for (size_t i = total; i < end; i++) {
      size_t from = base_data + (i - start);
      file[i] = i >= start && from < base_size ? base[from] : 0;
    }
    total = end;
  }
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(file, 1, total, f) != total || fclose(f) != 0) abort();
  grad_model *model = (grad_model *)1; /* must come back NULL on failure */
  grad_status s = grad_model_load(path, &model);
  if (s != GRAD_OK) {
    if (model != NULL) abort();
    if (!strstr(grad_last_error(), path)) abort(); /* names the file */
    return 0;
  }
  score_once(model);
  grad_model_free(model);
  return 0;
}
