/*
 * Internal safetensors reader and writer: the format of every weights and
 * model file libgrad touches. Layout: 8-byte little-endian header length N,
 * N bytes of JSON ({"name": {"dtype", "shape", "data_offsets"}, ...,
 * "__metadata__": {string: string}}), then the raw little-endian data.
 * The reader validates everything before any tensor is used.
 */
#ifndef GRAD_SAFETENSORS_H
#define GRAD_SAFETENSORS_H

#include "core.h"

enum { GRAD__ST_MAX_DIMS = 8 };

typedef enum grad__dtype {
  GRAD__DTYPE_F32 = 0,
  GRAD__DTYPE_F16 = 1,
  GRAD__DTYPE_BF16 = 2,
  GRAD__DTYPE_OTHER = 3  /* any other valid safetensors dtype: listed, not loadable */
} grad__dtype;

typedef struct grad__st_tensor {
  const char *name;
  grad__dtype dtype;
  const char *dtype_name;          /* as written in the file, e.g. "F32" */
  int ndim;
  int64_t shape[GRAD__ST_MAX_DIMS];
  size_t count;                    /* product of shape (1 for a scalar) */
  size_t offset;                   /* start of the data, from the start of the file */
  size_t nbytes;
} grad__st_tensor;

typedef struct grad__st_file grad__st_file;

/* Opens and validates a file (memory-mapped). Errors name the path and, where
 * it applies, the tensor and byte offset. */
grad_status grad__st_open(const char *path, grad__st_file **out);
/* The same from a caller's buffer, which must outlive the handle. */
grad_status grad__st_open_memory(const void *data, size_t size, const char *label,
                                 grad__st_file **out);
void grad__st_close(grad__st_file *file);

const char *grad__st_path(const grad__st_file *file);
size_t grad__st_count(const grad__st_file *file);
/* Tensors in file order (by data offset). */
const grad__st_tensor *grad__st_at(const grad__st_file *file, size_t index);
/* NULL when absent (no message set). */
const grad__st_tensor *grad__st_find(const grad__st_file *file, const char *name);

size_t grad__st_meta_count(const grad__st_file *file);
void grad__st_meta_at(const grad__st_file *file, size_t index, const char **key,
                      const char **value);
/* NULL when absent. */
const char *grad__st_meta(const grad__st_file *file, const char *key);

/* Total size of the file or buffer, and where the data section starts
 * (8 + header length); tensor offsets are from the start of the file. */
size_t grad__st_file_size(const grad__st_file *file);
size_t grad__st_data_start(const grad__st_file *file);
/* The tensor's raw little-endian bytes (nbytes of them, any alignment),
 * valid until grad__st_close. */
const void *grad__st_raw(const grad__st_file *file, const grad__st_tensor *tensor);
/* Writes "[64, 3, 7, 7]" ("[]" for a scalar) into buf, truncating to size. */
void grad__st_format_shape(int ndim, const int64_t *shape, char *buf, size_t size);

/*
 * Copies tensor `name` into out as float32 (converting F16/BF16). When
 * shape is not NULL the tensor must have exactly that shape (ndim dims):
 * GRAD_E_MISSING names an absent tensor, GRAD_E_SHAPE states both shapes,
 * GRAD_E_UNSUPPORTED a dtype that is not F32/F16/BF16. With check_finite,
 * a NaN or Inf gives GRAD_E_NUMERIC naming the tensor and element index.
 */
grad_status grad__st_read_f32(const grad__st_file *file, const char *name, int ndim,
                              const int64_t *shape, bool check_finite, float *out);

/* ---- Writing ---------------------------------------------------------- */
typedef struct grad__st_writer grad__st_writer;

grad_status grad__st_writer_create(grad__st_writer **out);
void grad__st_writer_free(grad__st_writer *writer);
/* Adds an F32 tensor; the data is copied. Names must be unique. */
grad_status grad__st_writer_add(grad__st_writer *writer, const char *name, int ndim,
                                const int64_t *shape, const float *data);
/* Adds or replaces a metadata entry. */
grad_status grad__st_writer_meta(grad__st_writer *writer, const char *key, const char *value);
/* Writes the file atomically (see fileio.h). The writer stays usable. */
grad_status grad__st_writer_save(const grad__st_writer *writer, const char *path);

/* CRC-32 (zlib's, as Python's zlib.crc32) of the data section: every byte
 * after the header, i.e. the tensors' bytes in file order. The writer's
 * value is that of the file it would save now. */
uint32_t grad__st_writer_data_crc32(const grad__st_writer *writer);
uint32_t grad__st_data_crc32(const grad__st_file *file);

#endif
