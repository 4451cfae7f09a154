/*
 * Safetensors reader: maps the file (or takes a caller's buffer), validates
 * the whole header before anything is handed out, and converts tensors to
 * float32 on request. Validation follows the safetensors specification
 * strictly (see docs/formats.md): a file that passes can be indexed with its
 * offsets without further bounds checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fileio.h"
#include "half.h"
#include "safetensors.h"

/* The reference implementation's cap; a larger header is refused before parsing. */
#define HEADER_CAP ((uint64_t)100000000)

struct grad__st_file {
  char *label;                  /* path, or the caller's label for a buffer */
  const unsigned char *base;    /* the whole file */
  size_t size;
  void *map;                    /* non-NULL when we own an mmap of size bytes */
  size_t data_start;            /* 8 + header length */
  grad__st_tensor *tensors;     /* sorted by offset */
  size_t count;
  const grad__st_tensor **by_name; /* sorted by name, for grad__st_find */
  char **meta_keys;             /* in file order */
  char **meta_values;
  size_t meta_count;
};

typedef struct dtype_info {
  const char *name;
  size_t size;
  grad__dtype dtype;
} dtype_info;

/* Every byte-sized safetensors dtype; only the first three are loadable. */
static const dtype_info dtype_table[] = {
  {"F32", 4, GRAD__DTYPE_F32},     {"F16", 2, GRAD__DTYPE_F16},
  {"BF16", 2, GRAD__DTYPE_BF16},   {"F64", 8, GRAD__DTYPE_OTHER},
  {"I64", 8, GRAD__DTYPE_OTHER},   {"U64", 8, GRAD__DTYPE_OTHER},
  {"C64", 8, GRAD__DTYPE_OTHER},   {"I32", 4, GRAD__DTYPE_OTHER},
  {"U32", 4, GRAD__DTYPE_OTHER},   {"I16", 2, GRAD__DTYPE_OTHER},
  {"U16", 2, GRAD__DTYPE_OTHER},   {"I8", 1, GRAD__DTYPE_OTHER},
  {"U8", 1, GRAD__DTYPE_OTHER},    {"BOOL", 1, GRAD__DTYPE_OTHER},
  {"F8_E5M2", 1, GRAD__DTYPE_OTHER}, {"F8_E4M3", 1, GRAD__DTYPE_OTHER},
  {"F8_E8M0", 1, GRAD__DTYPE_OTHER},
};
/* Valid in newer safetensors, but packed below one byte per element. */
static const char *const subbyte_dtypes[] = {"F4", "F6_E2M3", "F6_E3M2"};

/* Fails with the file's label in front of the message. */
static grad_status fail_in(const grad__st_file *file, grad_status status, const char *fmt, ...)
    GRAD__PRINTF(3, 4);
static grad_status fail_in(const grad__st_file *file, grad_status status, const char *fmt, ...) {
  char text[768];
  va_list args;
  va_start(args, fmt);
  vsnprintf(text, sizeof text, fmt, args);
  va_end(args);
  return grad__fail(status, "%s: %s", file->label, text);
}

void grad__st_format_shape(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t used = 0;
  if (size == 0) return;
  buf[0] = '\0';
  int n = snprintf(buf, size, "[");
  for (int d = 0; d < ndim && n >= 0; d++) {
    used += (size_t)n;
    if (used >= size) return;
    n = snprintf(buf + used, size - used, d ? ", %lld" : "%lld", (long long)shape[d]);
  }
  if (n < 0) return;
  used += (size_t)n;
  if (used < size) snprintf(buf + used, size - used, "]");
}

static uint64_t read_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* ---- Header validation ------------------------------------------------- */

static grad_status parse_metadata(grad__st_file *file, json_t *meta) {
  if (!json_is_object(meta))
    return fail_in(file, GRAD_E_FORMAT, "field __metadata__ is not an object");
  size_t n = json_object_size(meta);
  file->meta_keys = grad__calloc(n, sizeof *file->meta_keys);
  file->meta_values = grad__calloc(n, sizeof *file->meta_values);
  if (!file->meta_keys || !file->meta_values)
    return fail_in(file, GRAD_E_NOMEM, "out of memory for %zu metadata entries", n);
  const char *key;
  json_t *value;
  json_object_foreach(meta, key, value) {
    if (!json_is_string(value))
      return fail_in(file, GRAD_E_FORMAT, "__metadata__ entry '%s': value is not a string", key);
    char *k = grad__strdup(key), *v = grad__strdup(json_string_value(value));
    if (!k || !v) {
      grad__free(k), grad__free(v);
      return fail_in(file, GRAD_E_NOMEM, "out of memory for __metadata__ entry '%s'", key);
    }
    file->meta_keys[file->meta_count] = k;
    file->meta_values[file->meta_count] = v;
    file->meta_count++;
  }
  return GRAD_OK;
}

static grad_status parse_dtype(const grad__st_file *file, const char *name, json_t *value,
                               const dtype_info **out) {
  if (!json_is_string(value))
    return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field dtype is not a string", name);
  const char *text = json_string_value(value);
  for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++) {
    if (!strcmp(text, dtype_table[i].name)) {
      *out = &dtype_table[i];
      return GRAD_OK;
    }
  }
  for (size_t i = 0; i < sizeof subbyte_dtypes / sizeof subbyte_dtypes[0]; i++)
    if (!strcmp(text, subbyte_dtypes[i]))
      return fail_in(file, GRAD_E_UNSUPPORTED,
                     "tensor '%s': field dtype: sub-byte dtype '%s' is not supported", name,
                     text);
  return fail_in(file, GRAD_E_UNSUPPORTED, "tensor '%s': field dtype: unknown dtype '%s'", name,
                 text);
}

static grad_status parse_shape(const grad__st_file *file, grad__st_tensor *t, json_t *value,
                               size_t elem_size) {
  if (!json_is_array(value))
    return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field shape is not an array", t->name);
  size_t ndim = json_array_size(value);
  if (ndim > GRAD__ST_MAX_DIMS)
    return fail_in(file, GRAD_E_TOO_LARGE,
                   "tensor '%s': field shape has %zu dimensions, more than the %d libgrad handles",
                   t->name, ndim, GRAD__ST_MAX_DIMS);
  bool empty = false;
  for (size_t d = 0; d < ndim; d++) {
    json_t *dim = json_array_get(value, d);
    if (!json_is_integer(dim))
      return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field shape[%zu] is not an integer",
                     t->name, d);
    json_int_t v = json_integer_value(dim);
    if (v < 0)
      return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field shape[%zu] is negative (%lld)",
                     t->name, d, (long long)v);
    t->shape[d] = (int64_t)v;
    if (v == 0) empty = true;
  }
  t->ndim = (int)ndim;
  /* A zero anywhere makes the tensor empty however large the other
   * dimensions are (numpy agrees), so only non-empty products can overflow. */
  size_t count = 1;
  for (size_t d = 0; d < ndim && !empty; d++) {
    if ((uint64_t)t->shape[d] > SIZE_MAX || !grad__mul_size(count, (size_t)t->shape[d], &count))
      return fail_in(file, GRAD_E_FORMAT,
                     "tensor '%s': field shape: the element count overflows at shape[%zu]",
                     t->name, d);
  }
  t->count = empty ? 0 : count;
  if (!grad__mul_size(t->count, elem_size, &t->nbytes))
    return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field shape: the byte size overflows",
                   t->name);
  return GRAD_OK;
}

static grad_status parse_offsets(const grad__st_file *file, grad__st_tensor *t, json_t *value) {
  size_t data_size = file->size - file->data_start;
  if (!json_is_array(value) || json_array_size(value) != 2)
    return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field data_offsets is not [begin, end]",
                   t->name);
  json_int_t v[2];
  for (size_t i = 0; i < 2; i++) {
    json_t *item = json_array_get(value, i);
    if (!json_is_integer(item))
      return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field data_offsets[%zu] is not an integer",
                     t->name, i);
    v[i] = json_integer_value(item);
    if (v[i] < 0)
      return fail_in(file, GRAD_E_FORMAT, "tensor '%s': field data_offsets[%zu] is negative (%lld)",
                     t->name, i, (long long)v[i]);
  }
  if (v[0] > v[1])
    return fail_in(file, GRAD_E_FORMAT,
                   "tensor '%s': field data_offsets [%lld, %lld] begins after it ends", t->name,
                   (long long)v[0], (long long)v[1]);
  if ((uint64_t)v[1] > data_size)
    return fail_in(file, GRAD_E_FORMAT,
                   "tensor '%s': field data_offsets [%lld, %lld] runs past the end of the "
                   "%zu-byte data section (file byte %llu of %zu; truncated file?)",
                   t->name, (long long)v[0], (long long)v[1], data_size,
                   (unsigned long long)file->data_start + (unsigned long long)v[1], file->size);
  size_t begin = (size_t)v[0], end = (size_t)v[1];
  if (end - begin != t->nbytes) {
    char shape[160];
    grad__st_format_shape(t->ndim, t->shape, shape, sizeof shape);
    return fail_in(file, GRAD_E_FORMAT,
                   "tensor '%s': field data_offsets [%zu, %zu] holds %zu bytes but dtype %s with "
                   "shape %s needs %zu",
                   t->name, begin, end, end - begin, t->dtype_name, shape, t->nbytes);
  }
  t->offset = file->data_start + begin;
  return GRAD_OK;
}

static grad_status parse_tensor(grad__st_file *file, const char *name, json_t *entry,
                                grad__st_tensor *t) {
  t->name = grad__strdup(name);
  if (!t->name) return fail_in(file, GRAD_E_NOMEM, "out of memory for tensor '%s'", name);
  if (!json_is_object(entry))
    return fail_in(file, GRAD_E_FORMAT, "tensor '%s': entry is not an object", name);
  const char *key;
  json_t *value;
  json_object_foreach(entry, key, value) {
    if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
      return fail_in(file, GRAD_E_FORMAT, "tensor '%s': unexpected field '%s'", name, key);
  }
  static const char *const fields[] = {"dtype", "shape", "data_offsets"};
  for (int i = 0; i < 3; i++)
    if (!json_object_get(entry, fields[i]))
      return fail_in(file, GRAD_E_FORMAT, "tensor '%s': missing field %s", name, fields[i]);
  const dtype_info *dtype = NULL;
  grad_status s = parse_dtype(file, name, json_object_get(entry, "dtype"), &dtype);
  if (s != GRAD_OK) return s;
  t->dtype = dtype->dtype;
  t->dtype_name = dtype->name;
  s = parse_shape(file, t, json_object_get(entry, "shape"), dtype->size);
  if (s != GRAD_OK) return s;
  return parse_offsets(file, t, json_object_get(entry, "data_offsets"));
}

static int by_offset(const void *a, const void *b) {
  const grad__st_tensor *x = a, *y = b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b) {
  const grad__st_tensor *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

/* The tensors, in offset order, must tile the data section exactly. */
static grad_status check_layout(grad__st_file *file) {
  qsort(file->tensors, file->count, sizeof *file->tensors, by_offset);
  size_t expected = file->data_start;
  const grad__st_tensor *previous = NULL;
  for (size_t i = 0; i < file->count; i++) {
    const grad__st_tensor *t = &file->tensors[i];
    size_t begin = t->offset - file->data_start;
    if (t->offset < expected)
      return fail_in(file, GRAD_E_FORMAT,
                     "tensor '%s': field data_offsets [%zu, %zu] overlaps tensor '%s', which "
                     "ends at data offset %zu (file byte %zu)",
                     t->name, begin, begin + t->nbytes, previous->name,
                     expected - file->data_start, expected);
    if (t->offset > expected)
      return fail_in(file, GRAD_E_FORMAT,
                     "gap in the data section: data offsets %zu to %zu (file bytes %zu to %zu) "
                     "before tensor '%s' belong to no tensor",
                     expected - file->data_start, begin, expected, t->offset, t->name);
    if (t->nbytes) previous = t;
    expected = t->offset + t->nbytes;
  }
  if (expected != file->size)
    return fail_in(file, GRAD_E_FORMAT,
                   "gap in the data section: data offsets %zu to %zu (file bytes %zu to %zu) "
                   "after the last tensor belong to no tensor",
                   expected - file->data_start, file->size - file->data_start, expected,
                   file->size);
  file->by_name = grad__malloc_array(file->count, sizeof *file->by_name);
  if (!file->by_name) return fail_in(file, GRAD_E_NOMEM, "out of memory for the tensor index");
  for (size_t i = 0; i < file->count; i++) file->by_name[i] = &file->tensors[i];
  qsort(file->by_name, file->count, sizeof *file->by_name, by_name);
  return GRAD_OK;
}

static grad_status parse_json(grad__st_file *file, json_t *root) {
  if (!json_is_object(root))
    return fail_in(file, GRAD_E_FORMAT, "the JSON header at byte offset 8 is not an object");
  json_t *meta = json_object_get(root, "__metadata__");
  size_t n = json_object_size(root) - (meta ? 1 : 0);
  file->tensors = grad__calloc(n, sizeof *file->tensors);
  if (!file->tensors) return fail_in(file, GRAD_E_NOMEM, "out of memory for %zu tensors", n);
  grad_status s = GRAD_OK;
  if (meta && (s = parse_metadata(file, meta)) != GRAD_OK) return s;
  const char *key;
  json_t *value;
  json_object_foreach(root, key, value) {
    if (!strcmp(key, "__metadata__")) continue;
    /* count grows first so that close() frees a partly parsed tensor's name */
    grad__st_tensor *t = &file->tensors[file->count++];
    if ((s = parse_tensor(file, key, value, t)) != GRAD_OK) return s;
  }
  return check_layout(file);
}

static grad_status parse_file(grad__st_file *file) {
  if (file->size < 8)
    return fail_in(file, GRAD_E_FORMAT,
                   "%zu bytes is too short for the 8-byte header length at byte offset 0",
                   file->size);
  uint64_t n = read_le64(file->base);
  if (n < 2)
    return fail_in(file, GRAD_E_FORMAT,
                   "header length %llu at byte offset 0 is below the minimum of 2 ('{}')",
                   (unsigned long long)n);
  if (n > file->size - 8)
    return fail_in(file, GRAD_E_FORMAT,
                   "header length %llu at byte offset 0 runs past the end of the %zu-byte file",
                   (unsigned long long)n, file->size);
  if (n > HEADER_CAP)
    return fail_in(file, GRAD_E_TOO_LARGE,
                   "header length %llu at byte offset 0 is more than the limit of %llu",
                   (unsigned long long)n, (unsigned long long)HEADER_CAP);
  const char *header = (const char *)file->base + 8;
  const char *nul = memchr(header, '\0', (size_t)n);
  if (nul)
    return fail_in(file, GRAD_E_FORMAT, "NUL byte in the JSON header at byte offset %zu",
                   (size_t)(nul - header) + 8);
  file->data_start = 8 + (size_t)n;
  json_error_t error;
  json_t *root = json_loadb(header, (size_t)n, JSON_REJECT_DUPLICATES, &error);
  if (!root) {
    if (json_error_code(&error) == json_error_out_of_memory)
      return fail_in(file, GRAD_E_NOMEM, "out of memory parsing the JSON header");
    return fail_in(file, GRAD_E_FORMAT,
                   "invalid JSON header at byte offset %zu (line %d, column %d): %s",
                   (size_t)error.position + 8, error.line, error.column, error.text);
  }
  grad_status s = parse_json(file, root);
  json_decref(root);
  return s;
}

/* ---- Opening and closing ----------------------------------------------- */

static grad_status new_file(const char *label, grad__st_file **out) {
  grad__st_file *file = grad__calloc(1, sizeof *file);
  char *copy = grad__strdup(label);
  if (!file || !copy) {
    grad__free(file), grad__free(copy);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory opening the file", label);
  }
  file->label = copy;
  *out = file;
  return GRAD_OK;
}

static grad_status finish_open(grad__st_file *file, grad__st_file **out) {
  grad_status s = parse_file(file);
  if (s != GRAD_OK) {
    grad__st_close(file);
    return s;
  }
  *out = file;
  return GRAD_OK;
}

grad_status grad__st_open(const char *path, grad__st_file **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__st_open: out is NULL");
  *out = NULL;
  if (!path) return grad__fail(GRAD_E_INVALID_ARG, "grad__st_open: path is NULL");
  grad__st_file *file = NULL;
  grad_status s = new_file(path, &file);
  if (s != GRAD_OK) return s;
  int fd;
  s = grad__open_regular(path, &fd, &file->size);
  if (s != GRAD_OK) {
    grad__st_close(file);
    return s;
  }
  if (file->size > 0) { /* an empty file cannot be mapped; parse_file rejects it */
    void *map = mmap(NULL, file->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      s = fail_in(file, GRAD_E_IO, "cannot map %zu bytes: %s", file->size, strerror(errno));
      close(fd);
      grad__st_close(file);
      return s;
    }
    file->map = map;
    file->base = map;
  }
  close(fd);
  return finish_open(file, out);
}

grad_status grad__st_open_memory(const void *data, size_t size, const char *label,
                                 grad__st_file **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__st_open_memory: out is NULL");
  *out = NULL;
  if (!data && size)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__st_open_memory: data is NULL");
  grad__st_file *file = NULL;
  grad_status s = new_file(label ? label : "<memory>", &file);
  if (s != GRAD_OK) return s;
  file->base = data;
  file->size = size;
  return finish_open(file, out);
}

void grad__st_close(grad__st_file *file) {
  if (!file) return;
  for (size_t i = 0; i < file->count; i++) grad__free((char *)file->tensors[i].name);
  for (size_t i = 0; i < file->meta_count; i++) {
    grad__free(file->meta_keys[i]);
    grad__free(file->meta_values[i]);
  }
  grad__free(file->tensors);
  grad__free(file->by_name);
  grad__free(file->meta_keys);
  grad__free(file->meta_values);
  if (file->map) munmap(file->map, file->size);
  grad__free(file->label);
  grad__free(file);
}

/* ---- Queries ------------------------------------------------------------ */

const char *grad__st_path(const grad__st_file *file) { return file->label; }
size_t grad__st_count(const grad__st_file *file) { return file->count; }
size_t grad__st_file_size(const grad__st_file *file) { return file->size; }
size_t grad__st_data_start(const grad__st_file *file) { return file->data_start; }

const grad__st_tensor *grad__st_at(const grad__st_file *file, size_t index) {
  return index < file->count ? &file->tensors[index] : NULL;
}

const grad__st_tensor *grad__st_find(const grad__st_file *file, const char *name) {
  size_t lo = 0, hi = file->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, file->by_name[mid]->name);
    if (c == 0) return file->by_name[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

size_t grad__st_meta_count(const grad__st_file *file) { return file->meta_count; }

void grad__st_meta_at(const grad__st_file *file, size_t index, const char **key,
                      const char **value) {
  bool ok = index < file->meta_count;
  if (key) *key = ok ? file->meta_keys[index] : NULL;
  if (value) *value = ok ? file->meta_values[index] : NULL;
}

const char *grad__st_meta(const grad__st_file *file, const char *key) {
  for (size_t i = 0; i < file->meta_count; i++)
    if (!strcmp(file->meta_keys[i], key)) return file->meta_values[i];
  return NULL;
}

const void *grad__st_raw(const grad__st_file *file, const grad__st_tensor *tensor) {
  return file->base + tensor->offset;
}

/* ---- Reading as float32 ------------------------------------------------- */

static void copy_f32(const unsigned char *src, size_t count, float *out) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(out, src, count * sizeof *out);
#else
  for (size_t i = 0; i < count; i++) {
    const unsigned char *p = src + 4 * i;
    uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 24;
    memcpy(&out[i], &bits, sizeof bits);
  }
#endif
}

grad_status grad__st_read_f32(const grad__st_file *file, const char *name, int ndim,
                              const int64_t *shape, bool check_finite, float *out) {
  if (!file || !name)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__st_read_f32: file or name is NULL");
  const grad__st_tensor *t = grad__st_find(file, name);
  if (!t) return fail_in(file, GRAD_E_MISSING, "no tensor named '%s'", name);
  if (shape) {
    bool same = ndim == t->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == t->shape[d];
    if (!same) {
      char have[160], want[160];
      grad__st_format_shape(t->ndim, t->shape, have, sizeof have);
      if (ndim >= 0 && ndim <= GRAD__ST_MAX_DIMS)
        grad__st_format_shape(ndim, shape, want, sizeof want);
      else
        snprintf(want, sizeof want, "(%d dimensions)", ndim);
      return fail_in(file, GRAD_E_SHAPE, "tensor '%s' has shape %s but %s is expected", name,
                     have, want);
    }
  }
  if (t->dtype == GRAD__DTYPE_OTHER)
    return fail_in(file, GRAD_E_UNSUPPORTED,
                   "tensor '%s' has dtype %s; only F32, F16 and BF16 can be read as float32",
                   name, t->dtype_name);
  if (t->count == 0) return GRAD_OK;
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__st_read_f32: out is NULL");
  const unsigned char *src = file->base + t->offset;
  size_t elem = 4;
  switch (t->dtype) {
    case GRAD__DTYPE_F32: copy_f32(src, t->count, out); break;
    case GRAD__DTYPE_F16: grad__f16_to_f32_n(src, t->count, out), elem = 2; break;
    case GRAD__DTYPE_BF16: grad__bf16_to_f32_n(src, t->count, out), elem = 2; break;
    default: return grad__fail(GRAD_E_INTERNAL, "unreachable dtype");
  }
  if (check_finite) {
    for (size_t i = 0; i < t->count; i++) {
      if (!isfinite(out[i]))
        return fail_in(file, GRAD_E_NUMERIC, "tensor '%s' element %zu (file byte %zu) is %s",
                       name, i, t->offset + i * elem,
                       isnan(out[i]) ? "NaN" : (out[i] > 0 ? "+Inf" : "-Inf"));
    }
  }
  return GRAD_OK;
}

uint32_t grad__st_data_crc32(const grad__st_file *file) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const unsigned char *bytes = file->base + file->data_start;
  for (size_t left = file->size - file->data_start; left;) {
    uInt n = left > (1u << 30) ? (1u << 30) : (uInt)left;
    crc = crc32(crc, bytes, n);
    bytes += n, left -= n;
  }
  return (uint32_t)crc;
}
