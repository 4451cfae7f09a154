/* A model's provenance: how it was made, as key/value text pairs kept in
 * the model file's metadata under "provenance.<key>". */
#include <string.h>

#include "model_internal.h"
#include "safetensors.h"

#define PREFIX "provenance."

void grad__provenance_free(grad__provenance *p) {
  for (size_t i = 0; i < p->count; i++) grad__free(p->keys[i]), grad__free(p->values[i]);
  grad__free(p->keys);
  grad__free(p->values);
  memset(p, 0, sizeof *p);
}

grad_status grad__provenance_set(grad__provenance *p, const char *key, const char *value) {
  char *k = grad__strdup(key), *v = grad__strdup(value);
  char **keys = k && v ? grad__realloc(p->keys, (p->count + 1) * sizeof *keys) : NULL;
  if (keys) p->keys = keys;
  char **values = keys ? grad__realloc(p->values, (p->count + 1) * sizeof *values) : NULL;
  if (!values) {
    grad__free(k), grad__free(v);
    return grad__fail(GRAD_E_NOMEM, "out of memory recording the model's provenance");
  }
  p->values = values;
  p->keys[p->count] = k;
  p->values[p->count++] = v;
  return GRAD_OK;
}

grad_status grad__provenance_write(const grad__provenance *p, grad__st_writer *w) {
  grad_status s = GRAD_OK;
  for (size_t i = 0; s == GRAD_OK && i < p->count; i++) {
    char *key = grad__malloc(strlen(PREFIX) + strlen(p->keys[i]) + 1);
    if (!key) return grad__fail(GRAD_E_NOMEM, "out of memory saving the model's provenance");
    strcpy(key, PREFIX);
    strcat(key, p->keys[i]);
    s = grad__st_writer_meta(w, key, p->values[i]);
    grad__free(key);
  }
  return s;
}

grad_status grad__provenance_read(const grad__st_file *f, grad__provenance *p) {
  grad_status s = GRAD_OK;
  for (size_t i = 0; s == GRAD_OK && i < grad__st_meta_count(f); i++) {
    const char *key, *value;
    grad__st_meta_at(f, i, &key, &value);
    if (!strncmp(key, PREFIX, strlen(PREFIX)) && key[strlen(PREFIX)])
      s = grad__provenance_set(p, key + strlen(PREFIX), value);
  }
  return s;
}

const char *grad_model_provenance(const grad_model *model, const char *key) {
  if (!model || !key) return NULL;
  for (size_t i = 0; i < model->provenance.count; i++)
    if (!strcmp(model->provenance.keys[i], key)) return model->provenance.values[i];
  return NULL;
}

size_t grad_model_provenance_count(const grad_model *model) {
  return model ? model->provenance.count : 0;
}

const char *grad_model_provenance_key(const grad_model *model, size_t index) {
  return model && index < model->provenance.count ? model->provenance.keys[index] : NULL;
}
