/* The public grad_tensorfile calls: a thin layer over the internal reader and writer. */
#include <grad/tensorfile.h>

#include "safetensors.h"

/* The public handle is the internal one; the struct exists only so the two
 * types stay distinct. */
struct grad_tensorfile {
  grad__st_file *file;
};

static grad_status wrap(grad_status s, grad__st_file *file, grad_tensorfile **out) {
  if (s != GRAD_OK) return s;
  grad_tensorfile *tf = grad__calloc(1, sizeof *tf);
  if (!tf) {
    s = grad__fail(GRAD_E_NOMEM, "%s: out of memory", grad__st_path(file));
    grad__st_close(file);
    return s;
  }
  tf->file = file;
  *out = tf;
  return GRAD_OK;
}

grad_status grad_tensorfile_open(const char *path, grad_tensorfile **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_open: out is NULL");
  *out = NULL;
  if (!path) return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_open: path is NULL");
  grad__st_file *file = NULL;
  grad_status s = grad__st_open(path, &file);
  return wrap(s, file, out);
}

grad_status grad_tensorfile_open_memory(const void *data, size_t size, const char *label,
                                        grad_tensorfile **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_open_memory: out is NULL");
  *out = NULL;
  grad__st_file *file = NULL;
  grad_status s = grad__st_open_memory(data, size, label, &file);
  return wrap(s, file, out);
}

void grad_tensorfile_free(grad_tensorfile *tf) {
  if (!tf) return;
  grad__st_close(tf->file);
  grad__free(tf);
}

size_t grad_tensorfile_count(const grad_tensorfile *tf) {
  return tf ? grad__st_count(tf->file) : 0;
}

static const grad__st_tensor *tensor_at(const grad_tensorfile *tf, size_t index) {
  return tf ? grad__st_at(tf->file, index) : NULL;
}

grad_status grad_tensorfile_find(const grad_tensorfile *tf, const char *name, size_t *index) {
  if (!tf || !name || !index)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_find: NULL argument");
  const grad__st_tensor *t = grad__st_find(tf->file, name);
  if (!t)
    return grad__fail(GRAD_E_MISSING, "%s: no tensor named '%s'", grad__st_path(tf->file), name);
  *index = (size_t)(t - grad__st_at(tf->file, 0));
  return GRAD_OK;
}

const char *grad_tensorfile_name(const grad_tensorfile *tf, size_t index) {
  const grad__st_tensor *t = tensor_at(tf, index);
  return t ? t->name : NULL;
}

const char *grad_tensorfile_dtype_name(const grad_tensorfile *tf, size_t index) {
  const grad__st_tensor *t = tensor_at(tf, index);
  return t ? t->dtype_name : NULL;
}

int grad_tensorfile_ndim(const grad_tensorfile *tf, size_t index) {
  const grad__st_tensor *t = tensor_at(tf, index);
  return t ? t->ndim : -1;
}

int64_t grad_tensorfile_dim(const grad_tensorfile *tf, size_t index, int dim) {
  const grad__st_tensor *t = tensor_at(tf, index);
  return t && dim >= 0 && dim < t->ndim ? t->shape[dim] : -1;
}

size_t grad_tensorfile_elements(const grad_tensorfile *tf, size_t index) {
  const grad__st_tensor *t = tensor_at(tf, index);
  return t ? t->count : 0;
}

size_t grad_tensorfile_meta_count(const grad_tensorfile *tf) {
  return tf ? grad__st_meta_count(tf->file) : 0;
}

const char *grad_tensorfile_meta_key(const grad_tensorfile *tf, size_t index) {
  const char *key = NULL;
  if (tf) grad__st_meta_at(tf->file, index, &key, NULL);
  return key;
}

const char *grad_tensorfile_meta_value(const grad_tensorfile *tf, size_t index) {
  const char *value = NULL;
  if (tf) grad__st_meta_at(tf->file, index, NULL, &value);
  return value;
}

const char *grad_tensorfile_meta_get(const grad_tensorfile *tf, const char *key) {
  return tf && key ? grad__st_meta(tf->file, key) : NULL;
}

grad_status grad_tensorfile_read_f32(const grad_tensorfile *tf, const char *name, float *out,
                                     size_t capacity) {
  if (!tf || !name)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_read_f32: NULL argument");
  const grad__st_tensor *t = grad__st_find(tf->file, name);
  if (!t)
    return grad__fail(GRAD_E_MISSING, "%s: no tensor named '%s'", grad__st_path(tf->file), name);
  if (capacity < t->count || (!out && t->count))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "%s: tensor '%s' has %zu elements but the buffer holds %zu",
                      grad__st_path(tf->file), name, t->count, out ? capacity : 0);
  return grad__st_read_f32(tf->file, name, 0, NULL, false, out);
}

size_t grad_tensorfile_bytes(const grad_tensorfile *tf) {
  return tf ? grad__st_file_size(tf->file) : 0;
}

size_t grad_tensorfile_header_bytes(const grad_tensorfile *tf) {
  return tf ? grad__st_data_start(tf->file) - 8 : 0;
}

size_t grad_tensorfile_tensor_bytes(const grad_tensorfile *tf, size_t index) {
  const grad__st_tensor *t = tensor_at(tf, index);
  return t ? t->nbytes : 0;
}

/* ---- Writing ---------------------------------------------------------------- */

struct grad_tensorfile_writer {
  grad__st_writer *writer;
};

grad_status grad_tensorfile_writer_create(grad_tensorfile_writer **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_writer_create: out is NULL");
  *out = NULL;
  grad_tensorfile_writer *w = grad__calloc(1, sizeof *w);
  if (!w) return grad__fail(GRAD_E_NOMEM, "out of memory for a tensor file writer");
  grad_status s = grad__st_writer_create(&w->writer);
  if (s != GRAD_OK) {
    grad__free(w);
    return s;
  }
  *out = w;
  return GRAD_OK;
}

void grad_tensorfile_writer_free(grad_tensorfile_writer *writer) {
  if (!writer) return;
  grad__st_writer_free(writer->writer);
  grad__free(writer);
}

grad_status grad_tensorfile_writer_add_f32(grad_tensorfile_writer *writer, const char *name,
                                           int ndim, const int64_t *shape, const float *data) {
  if (!writer || !name || (!shape && ndim > 0) || !data)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_writer_add_f32: NULL argument");
  return grad__st_writer_add(writer->writer, name, ndim, shape, data);
}

grad_status grad_tensorfile_writer_set_meta(grad_tensorfile_writer *writer, const char *key,
                                            const char *value) {
  if (!writer || !key || !value)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_writer_set_meta: NULL argument");
  return grad__st_writer_meta(writer->writer, key, value);
}

grad_status grad_tensorfile_writer_save(const grad_tensorfile_writer *writer, const char *path) {
  if (!writer || !path)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_tensorfile_writer_save: NULL argument");
  return grad__st_writer_save(writer->writer, path);
}
