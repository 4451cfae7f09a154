/*
 * Safetensors writer. Output conventions (byte for byte those of the
 * reference implementation for the same order of entries):
 * - compact JSON, "__metadata__" first (only when it has entries) with its
 *   keys sorted by byte value, then the tensors in insertion order, each as
 *   {"dtype":"F32","shape":[...],"data_offsets":[begin,end]};
 * - the header padded with spaces to a multiple of 8 bytes, so the data
 *   section (and every F32 tensor in it) is 8-byte aligned in the file;
 * - data offsets contiguous from 0 in insertion order, no gaps.
 * The header is built by hand rather than with jansson so that its exact
 * bytes are ours to document and all of its memory goes through
 * grad__malloc.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fileio.h"
#include "safetensors.h"

#define HEADER_CAP ((size_t)100000000) /* the reader's limit */

typedef struct writer_tensor {
  char *name;
  int ndim;
  int64_t shape[GRAD__ST_MAX_DIMS];
  size_t count;
  float *data;
} writer_tensor;

struct grad__st_writer {
  writer_tensor *tensors;
  size_t count, capacity;
  char **keys;    /* sorted by strcmp */
  char **values;
  size_t meta_count, meta_capacity;
};

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
 * The reader's JSON parser refuses anything else, so the writer must too. */
static bool valid_utf8(const char *text) {
  const unsigned char *s = (const unsigned char *)text;
  while (*s) {
    unsigned c = *s;
    int extra;
    uint32_t cp, min;
    if (c < 0x80) {
      s++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    for (int i = 1; i <= extra; i++) {
      if ((s[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    s += extra + 1;
  }
  return true;
}

grad_status grad__st_writer_create(grad__st_writer **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__st_writer_create: out is NULL");
  *out = grad__calloc(1, sizeof **out);
  if (!*out) return grad__fail(GRAD_E_NOMEM, "out of memory creating a safetensors writer");
  return GRAD_OK;
}

void grad__st_writer_free(grad__st_writer *writer) {
  if (!writer) return;
  for (size_t i = 0; i < writer->count; i++) {
    grad__free(writer->tensors[i].name);
    grad__free(writer->tensors[i].data);
  }
  for (size_t i = 0; i < writer->meta_count; i++) {
    grad__free(writer->keys[i]);
    grad__free(writer->values[i]);
  }
  grad__free(writer->tensors);
  grad__free(writer->keys);
  grad__free(writer->values);
  grad__free(writer);
}

grad_status grad__st_writer_add(grad__st_writer *writer, const char *name, int ndim,
                                const int64_t *shape, const float *data) {
  if (!writer || !name)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__st_writer_add: writer or name is NULL");
  if (!*name || !strcmp(name, "__metadata__") || !valid_utf8(name))
    return grad__fail(GRAD_E_INVALID_ARG,
                      "tensor name '%s' is empty, reserved or not valid UTF-8", name);
  if (ndim < 0 || ndim > GRAD__ST_MAX_DIMS || (ndim > 0 && !shape))
    return grad__fail(GRAD_E_INVALID_ARG, "tensor '%s': %d dimensions (0 to %d, shape given)",
                      name, ndim, GRAD__ST_MAX_DIMS);
  size_t count = 1;
  bool empty = false;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0)
      return grad__fail(GRAD_E_INVALID_ARG, "tensor '%s': shape[%d] is negative (%lld)", name, d,
                        (long long)shape[d]);
    if (shape[d] == 0) empty = true;
  }
  size_t bytes = 0;
  for (int d = 0; d < ndim && !empty; d++)
    if ((uint64_t)shape[d] > SIZE_MAX || !grad__mul_size(count, (size_t)shape[d], &count))
      return grad__fail(GRAD_E_TOO_LARGE, "tensor '%s': the element count overflows", name);
  if (empty) count = 0;
  if (!grad__mul_size(count, sizeof(float), &bytes))
    return grad__fail(GRAD_E_TOO_LARGE, "tensor '%s': the byte size overflows", name);
  if (count && !data) return grad__fail(GRAD_E_INVALID_ARG, "tensor '%s': data is NULL", name);
  for (size_t i = 0; i < writer->count; i++)
    if (!strcmp(writer->tensors[i].name, name))
      return grad__fail(GRAD_E_INVALID_ARG, "tensor '%s' was already added", name);
  if (writer->count == writer->capacity) {
    size_t capacity = writer->capacity ? 2 * writer->capacity : 16;
    writer_tensor *grown = grad__realloc(writer->tensors, capacity * sizeof *grown);
    if (!grown) return grad__fail(GRAD_E_NOMEM, "tensor '%s': out of memory", name);
    writer->tensors = grown;
    writer->capacity = capacity;
  }
  writer_tensor t = {.ndim = ndim, .count = count};
  t.name = grad__strdup(name);
  t.data = grad__malloc_array(count, sizeof(float));
  if (!t.name || !t.data) {
    grad__free(t.name), grad__free(t.data);
    return grad__fail(GRAD_E_NOMEM, "tensor '%s': out of memory copying %zu floats", name, count);
  }
  for (int d = 0; d < ndim; d++) t.shape[d] = shape[d];
  if (count) memcpy(t.data, data, bytes);
  writer->tensors[writer->count++] = t;
  return GRAD_OK;
}

grad_status grad__st_writer_meta(grad__st_writer *writer, const char *key, const char *value) {
  if (!writer || !key || !value)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__st_writer_meta: writer, key or value is NULL");
  if (!valid_utf8(key) || !valid_utf8(value))
    return grad__fail(GRAD_E_INVALID_ARG, "metadata '%s': key or value is not valid UTF-8", key);
  size_t lo = 0, hi = writer->meta_count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(key, writer->keys[mid]);
    if (c == 0) {
      char *copy = grad__strdup(value);
      if (!copy) return grad__fail(GRAD_E_NOMEM, "metadata '%s': out of memory", key);
      grad__free(writer->values[mid]);
      writer->values[mid] = copy;
      return GRAD_OK;
    }
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  if (writer->meta_count == writer->meta_capacity) {
    size_t capacity = writer->meta_capacity ? 2 * writer->meta_capacity : 8;
    char **keys = grad__realloc(writer->keys, capacity * sizeof *keys);
    if (!keys) return grad__fail(GRAD_E_NOMEM, "metadata '%s': out of memory", key);
    writer->keys = keys;
    char **values = grad__realloc(writer->values, capacity * sizeof *values);
    if (!values) return grad__fail(GRAD_E_NOMEM, "metadata '%s': out of memory", key);
    writer->values = values;
    writer->meta_capacity = capacity;
  }
  char *k = grad__strdup(key), *v = grad__strdup(value);
  if (!k || !v) {
    grad__free(k), grad__free(v);
    return grad__fail(GRAD_E_NOMEM, "metadata '%s': out of memory", key);
  }
  size_t tail = writer->meta_count - lo;
  memmove(writer->keys + lo + 1, writer->keys + lo, tail * sizeof *writer->keys);
  memmove(writer->values + lo + 1, writer->values + lo, tail * sizeof *writer->values);
  writer->keys[lo] = k;
  writer->values[lo] = v;
  writer->meta_count++;
  return GRAD_OK;
}

/* ---- Header text --------------------------------------------------------- */

typedef struct text {
  char *data;
  size_t size, capacity;
  bool failed;
} text;

static void put(text *t, const char *s, size_t n) {
  if (t->failed) return;
  if (t->size + n + 1 > t->capacity) {
    size_t capacity = t->capacity ? t->capacity : 256;
    while (capacity < t->size + n + 1) capacity *= 2;
    char *grown = grad__realloc(t->data, capacity);
    if (!grown) {
      t->failed = true;
      return;
    }
    t->data = grown;
    t->capacity = capacity;
  }
  memcpy(t->data + t->size, s, n);
  t->size += n;
  t->data[t->size] = '\0';
}

static void put_str(text *t, const char *s) { put(t, s, strlen(s)); }

/* A JSON string, escaped as serde_json and Python's json do: the two-letter
 * escapes where JSON has them, \u00xx for other control characters, and
 * everything else (UTF-8 included) as is. */
static void put_json_string(text *t, const char *s) {
  put(t, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    switch (*p) {
      case '"': put(t, "\\\"", 2); break;
      case '\\': put(t, "\\\\", 2); break;
      case '\b': put(t, "\\b", 2); break;
      case '\f': put(t, "\\f", 2); break;
      case '\n': put(t, "\\n", 2); break;
      case '\r': put(t, "\\r", 2); break;
      case '\t': put(t, "\\t", 2); break;
      default:
        if (*p < 0x20) {
          snprintf(esc, sizeof esc, "\\u%04x", *p);
          put(t, esc, 6);
        } else {
          put(t, (const char *)p, 1);
        }
    }
  }
  put(t, "\"", 1);
}

static void put_number(text *t, unsigned long long v) {
  char buf[24];
  int n = snprintf(buf, sizeof buf, "%llu", v);
  put(t, buf, (size_t)n);
}

/* The padded header; total data bytes in *data_bytes. */
static grad_status build_header(const grad__st_writer *writer, const char *path, text *header,
                                size_t *data_bytes) {
  put_str(header, "{");
  if (writer->meta_count) {
    put_str(header, "\"__metadata__\":{");
    for (size_t i = 0; i < writer->meta_count; i++) {
      if (i) put_str(header, ",");
      put_json_string(header, writer->keys[i]);
      put_str(header, ":");
      put_json_string(header, writer->values[i]);
    }
    put_str(header, writer->count ? "}," : "}");
  }
  size_t offset = 0;
  for (size_t i = 0; i < writer->count; i++) {
    const writer_tensor *t = &writer->tensors[i];
    size_t bytes = t->count * sizeof(float); /* checked in grad__st_writer_add */
    if (offset > SIZE_MAX - bytes)
      return grad__fail(GRAD_E_TOO_LARGE, "%s: tensor '%s': total data size overflows", path,
                        t->name);
    if (i) put_str(header, ",");
    put_json_string(header, t->name);
    put_str(header, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      if (d) put_str(header, ",");
      put_number(header, (unsigned long long)t->shape[d]);
    }
    put_str(header, "],\"data_offsets\":[");
    put_number(header, offset);
    put_str(header, ",");
    put_number(header, offset + bytes);
    put_str(header, "]}");
    offset += bytes;
  }
  put_str(header, "}");
  while (!header->failed && header->size % 8) put_str(header, " ");
  if (header->failed) return grad__fail(GRAD_E_NOMEM, "%s: out of memory for the header", path);
  if (header->size > HEADER_CAP)
    return grad__fail(GRAD_E_TOO_LARGE, "%s: the %zu-byte header is more than the limit of %zu",
                      path, header->size, HEADER_CAP);
  *data_bytes = offset;
  return GRAD_OK;
}

static grad_status write_floats(grad__atomic_file *file, const float *data, size_t count) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return grad__atomic_write(file, data, count * sizeof(float));
#else
  unsigned char buf[4096];
  for (size_t i = 0; i < count;) {
    size_t n = 0;
    for (; i < count && n + 4 <= sizeof buf; i++, n += 4) {
      uint32_t bits;
      memcpy(&bits, &data[i], sizeof bits);
      for (int b = 0; b < 4; b++) buf[n + b] = (unsigned char)(bits >> (8 * b));
    }
    grad_status s = grad__atomic_write(file, buf, n);
    if (s != GRAD_OK) return s;
  }
  return GRAD_OK;
#endif
}

grad_status grad__st_writer_save(const grad__st_writer *writer, const char *path) {
  if (!writer || !path)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__st_writer_save: writer or path is NULL");
  text header = {0};
  size_t data_bytes = 0;
  grad_status s = build_header(writer, path, &header, &data_bytes);
  if (s != GRAD_OK) {
    grad__free(header.data);
    return s;
  }
  unsigned char length[8];
  for (int i = 0; i < 8; i++) length[i] = (unsigned char)((uint64_t)header.size >> (8 * i));
  grad__atomic_file *file = NULL;
  s = grad__atomic_open(path, &file);
  if (s == GRAD_OK) s = grad__atomic_write(file, length, sizeof length);
  if (s == GRAD_OK) s = grad__atomic_write(file, header.data, header.size);
  for (size_t i = 0; s == GRAD_OK && i < writer->count; i++)
    s = write_floats(file, writer->tensors[i].data, writer->tensors[i].count);
  grad__free(header.data);
  if (s != GRAD_OK) {
    grad__atomic_abort(file);
    return s;
  }
  return grad__atomic_commit(file);
}

uint32_t grad__st_writer_data_crc32(const grad__st_writer *writer) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t t = 0; t < writer->count; t++) {
    const float *data = writer->tensors[t].data;
    size_t count = writer->tensors[t].count;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const unsigned char *bytes = (const unsigned char *)data;
    for (size_t left = count * sizeof(float); left;) { /* crc32 takes a uInt length */
      uInt n = left > (1u << 30) ? (1u << 30) : (uInt)left;
      crc = crc32(crc, bytes, n);
      bytes += n, left -= n;
    }
#else
    for (size_t i = 0; i < count; i++) {
      uint32_t bits;
      unsigned char le[4];
      memcpy(&bits, &data[i], sizeof bits);
      for (int b = 0; b < 4; b++) le[b] = (unsigned char)(bits >> (8 * b));
      crc = crc32(crc, le, 4);
    }
#endif
  }
  return (uint32_t)crc;
}
