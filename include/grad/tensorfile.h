/*
 * libgrad: reading and writing safetensors weight and model files.
 *
 * libgrad's weights and models are safetensors files (an 8-byte length, a
 * JSON header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data; see docs/formats.md). These calls list and read any
 * such file, so a program can inspect a model or pull out a tensor without
 * Python:
 *
 *   grad_tensorfile *tf = NULL;
 *   if (grad_tensorfile_open("weights.safetensors", &tf) != GRAD_OK) {
 *     fprintf(stderr, "%s\n", grad_last_error());
 *   } else {
 *     for (size_t i = 0; i < grad_tensorfile_count(tf); i++)
 *       printf("%s %s\n", grad_tensorfile_name(tf, i), grad_tensorfile_dtype_name(tf, i));
 *   }
 *   grad_tensorfile_free(tf);
 *
 * Opening validates the whole header (offsets, sizes, dtypes, JSON) and
 * fails with GRAD_E_FORMAT, naming the byte offset, tensor or field at
 * fault, on any inconsistency. An open file is read-only: any number of
 * threads may query and read it at once. Strings returned are owned by the
 * handle and stay valid until grad_tensorfile_free.
 */
#ifndef GRAD_TENSORFILE_H
#define GRAD_TENSORFILE_H

#include <grad/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct grad_tensorfile grad_tensorfile;

/*
 * Opens (memory-maps) and validates a safetensors file. Errors:
 * GRAD_E_IO (cannot open or map), GRAD_E_FORMAT (corrupt),
 * GRAD_E_UNSUPPORTED (a dtype libgrad does not know), GRAD_E_TOO_LARGE
 * (header over 100 MB, more than 8 dimensions), GRAD_E_NOMEM.
 * On failure *out is NULL.
 */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_open(const char *path,
                                                         grad_tensorfile **out);

/*
 * The same for a file held in memory; data must stay valid and unchanged
 * until the handle is closed. label names the buffer in error messages
 * (NULL gives "<memory>").
 */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_open_memory(const void *data, size_t size,
                                                                const char *label,
                                                                grad_tensorfile **out);

/* Unmaps and frees; NULL is a no-op. */
GRAD_API void grad_tensorfile_free(grad_tensorfile *tf);

/* Number of tensors; they are indexed 0..count-1 in the order of their data
 * in the file. 0 for NULL. */
GRAD_API size_t grad_tensorfile_count(const grad_tensorfile *tf);

/* Index of the tensor called name: GRAD_OK, or GRAD_E_MISSING. */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_find(const grad_tensorfile *tf,
                                                         const char *name, size_t *index);

/* The tensor's name; NULL for an index out of range. */
GRAD_API const char *grad_tensorfile_name(const grad_tensorfile *tf, size_t index);

/* The dtype as written in the file ("F32", "F16", "BF16", "I64", ...);
 * NULL for an index out of range. Only F32, F16 and BF16 can be read. */
GRAD_API const char *grad_tensorfile_dtype_name(const grad_tensorfile *tf, size_t index);

/* Number of dimensions (0 for a scalar); -1 for an index out of range. */
GRAD_API int grad_tensorfile_ndim(const grad_tensorfile *tf, size_t index);

/* Size of dimension dim; -1 when index or dim is out of range. */
GRAD_API int64_t grad_tensorfile_dim(const grad_tensorfile *tf, size_t index, int dim);

/* Number of elements (the product of the dimensions, 1 for a scalar);
 * 0 for an index out of range. */
GRAD_API size_t grad_tensorfile_elements(const grad_tensorfile *tf, size_t index);

/* Number of __metadata__ entries, in the order of the file. */
GRAD_API size_t grad_tensorfile_meta_count(const grad_tensorfile *tf);
/* Key and value of entry index; NULL when out of range. */
GRAD_API const char *grad_tensorfile_meta_key(const grad_tensorfile *tf, size_t index);
GRAD_API const char *grad_tensorfile_meta_value(const grad_tensorfile *tf, size_t index);
/* The value stored under key; NULL when absent. */
GRAD_API const char *grad_tensorfile_meta_get(const grad_tensorfile *tf, const char *key);

/*
 * Copies tensor name into out as float32 (F16 and BF16 are converted
 * exactly). capacity is the number of floats out can hold; it must be at
 * least grad_tensorfile_elements(). NaN and Inf values are copied as they
 * are. Errors: GRAD_E_MISSING (no such tensor), GRAD_E_UNSUPPORTED (another
 * dtype), GRAD_E_INVALID_ARG (NULL argument or capacity too small).
 */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_read_f32(const grad_tensorfile *tf,
                                                             const char *name, float *out,
                                                             size_t capacity);

/* The layout of the file, for tools that show it: its size in bytes, the
 * length of its JSON header (after the 8-byte length field), and the bytes
 * tensor index takes in the file. 0 for NULL or an index out of range. */
GRAD_API size_t grad_tensorfile_bytes(const grad_tensorfile *tf);
GRAD_API size_t grad_tensorfile_header_bytes(const grad_tensorfile *tf);
GRAD_API size_t grad_tensorfile_tensor_bytes(const grad_tensorfile *tf, size_t index);

/* ---- Writing ---------------------------------------------------------------
 * A writer collects F32 tensors and metadata in memory and saves them as one
 * safetensors file:
 *
 *   grad_tensorfile_writer *w = NULL;
 *   int64_t shape[2] = {h, w};
 *   if (grad_tensorfile_writer_create(&w) != GRAD_OK ||
 *       grad_tensorfile_writer_add_f32(w, "map", 2, shape, map) != GRAD_OK ||
 *       grad_tensorfile_writer_set_meta(w, "image", path) != GRAD_OK ||
 *       grad_tensorfile_writer_save(w, "map.safetensors") != GRAD_OK)
 *     fprintf(stderr, "%s\n", grad_last_error());
 *   grad_tensorfile_writer_free(w);
 *
 * A writer is not thread-safe: one thread at a time.
 */
typedef struct grad_tensorfile_writer grad_tensorfile_writer;

/* An empty writer. Errors: GRAD_E_INVALID_ARG (out NULL), GRAD_E_NOMEM. */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_writer_create(grad_tensorfile_writer **out);
/* Frees the writer and the copies it holds; NULL is a no-op. */
GRAD_API void grad_tensorfile_writer_free(grad_tensorfile_writer *writer);

/*
 * Adds an F32 tensor of ndim (0..8) dimensions; data (the product of the
 * shape's values, C order) is copied, so the caller keeps ownership. Names
 * must be unique. Errors: GRAD_E_INVALID_ARG (a NULL argument, a duplicate
 * name, a negative dimension), GRAD_E_TOO_LARGE, GRAD_E_NOMEM.
 */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_writer_add_f32(
    grad_tensorfile_writer *writer, const char *name, int ndim, const int64_t *shape,
    const float *data);

/* Adds or replaces a metadata entry (both strings copied). Errors:
 * GRAD_E_INVALID_ARG (NULL argument), GRAD_E_NOMEM. */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_writer_set_meta(
    grad_tensorfile_writer *writer, const char *key, const char *value);

/* Writes the file atomically: an existing file at path is replaced only
 * once the new one is complete. The writer stays usable. Errors:
 * GRAD_E_INVALID_ARG, GRAD_E_IO (naming the path), GRAD_E_NOMEM. */
GRAD_API GRAD_NODISCARD grad_status grad_tensorfile_writer_save(
    const grad_tensorfile_writer *writer, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_TENSORFILE_H */
