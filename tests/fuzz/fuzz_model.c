/*
 * libFuzzer target: model files through grad_model_load. The loader takes
 * a path, so each input is written to one private temporary file first.
 * A model that loads must give a usable scoring context.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grad/model.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_file(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/grad-fuzz-model-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    atexit(remove_file);
  }
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
  grad_model *model = (grad_model *)1; /* must come back NULL on failure */
  grad_status s = grad_model_load(path, &model);
  if (s != GRAD_OK) {
    if (model != NULL) abort();
    if (!strstr(grad_last_error(), path)) abort(); /* names the file */
    return 0;
  }
  if (grad_model_input_size(model) <= 0) abort();
  grad_context *ctx = NULL;
  s = grad_context_create(model, &ctx);
  if (s != GRAD_OK && s != GRAD_E_NOMEM && s != GRAD_E_TOO_LARGE) abort();
  grad_context_free(ctx);
  grad_model_free(model);
  return 0;
}
