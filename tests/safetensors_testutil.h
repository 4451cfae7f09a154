/* Helpers shared by the safetensors test programs (hand-made files,
 * temporary folders, status-and-message assertions). */
#ifndef GRAD_SAFETENSORS_TESTUTIL_H
#define GRAD_SAFETENSORS_TESTUTIL_H

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>

#include "core.h"
#include "fileio.h"
#include "testutil.h"


/* A file image: 8-byte little-endian length (header_len, or the real length
 * when declared is negative), the header bytes, then data_bytes bytes of
 * data (byte i = i & 0xff). */
static inline unsigned char *make_file(const char *header, size_t header_len, long long declared,
                                size_t data_bytes, size_t *size) {
  *size = 8 + header_len + data_bytes;
  unsigned char *buf = malloc(*size);
  ck_assert_ptr_nonnull(buf);
  uint64_t n = declared < 0 ? (uint64_t)header_len : (uint64_t)declared;
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
  memcpy(buf + 8, header, header_len);
  for (size_t i = 0; i < data_bytes; i++) buf[8 + header_len + i] = (unsigned char)i;
  return buf;
}

static inline void write_bytes(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, size, f), size);
  ck_assert_int_eq(fclose(f), 0);
}

/* The whole file; grad__free it. */
static inline unsigned char *slurp(const char *path, size_t *size) {
  unsigned char *data = NULL;
  ck_assert_int_eq(grad__read_file(path, SIZE_MAX, &data, size), GRAD_OK);
  return data;
}

/* Entries of a folder other than . and .. (catches left-over temp files). */
static inline int folder_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

#define ck_assert_error(status, expected, substring)                              \
  do {                                                                             \
    ck_assert_msg((status) == (expected), "status %s, expected %s (%s)",           \
                  grad_status_name(status), grad_status_name(expected),            \
                  grad_last_error());                                              \
    ck_assert_msg(strstr(grad_last_error(), (substring)) != NULL,                  \
                  "message '%s' lacks '%s'", grad_last_error(), (substring));      \
  } while (0)

/* A tensor entry of a hand-written header. */
#define T(name, dtype, shape, b, e) \
  "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

#endif
