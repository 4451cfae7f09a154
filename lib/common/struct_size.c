/*
 * The one struct_size policy of every option and summary struct (see
 * core.h): older, shorter structs keep the defaults of the fields they do
 * not have; newer, longer ones are accepted when the fields this library
 * does not know are all zero. This is what lets a field be appended without
 * breaking binaries built against an older header.
 */
#include <string.h>

#include "core.h"

/* A struct_size above this is not a struct (an uninitialised size_t). */
#define GRAD__STRUCT_SIZE_MAX ((size_t)1 << 16)

static size_t caller_size(const void *caller) {
  size_t size;
  memcpy(&size, caller, sizeof size);
  return size;
}

static grad_status check_size(const char *name, size_t size, size_t min_size) {
  if (size < min_size || size > GRAD__STRUCT_SIZE_MAX)
    return grad__fail(GRAD_E_INVALID_ARG,
                      "%s.struct_size is %zu, not the size of any version of %s (at least %zu): "
                      "fill the struct with %s_init(&s, sizeof s)",
                      name, size, name, min_size, name);
  return GRAD_OK;
}

void grad__struct_init(void *caller, size_t size, const void *defaults, size_t lib_size) {
  if (!caller || size < sizeof(size_t)) return;
  memset(caller, 0, size);
  memcpy(caller, defaults, size < lib_size ? size : lib_size);
  memcpy(caller, &size, sizeof size);
}

grad_status grad__struct_read(const char *name, const void *caller, size_t min_size,
                              void *resolved, size_t lib_size) {
  if (!caller) return GRAD_OK;
  size_t size = caller_size(caller);
  grad_status s = check_size(name, size, min_size);
  if (s != GRAD_OK) return s;
  const unsigned char *bytes = caller;
  for (size_t i = lib_size; i < size; i++)
    if (bytes[i])
      return grad__fail(GRAD_E_INVALID_ARG,
                        "%s: set fields past byte %zu that this libgrad (%s) does not know "
                        "(struct_size %zu from a newer header): upgrade libgrad or leave them "
                        "at their defaults",
                        name, lib_size, grad_version_string(), size);
  memcpy(resolved, caller, size < lib_size ? size : lib_size);
  memcpy(resolved, &lib_size, sizeof lib_size);
  return GRAD_OK;
}

grad_status grad__struct_write(const char *name, void *caller, size_t min_size, const void *value,
                               size_t lib_size) {
  size_t size = caller_size(caller);
  grad_status s = check_size(name, size, min_size);
  if (s != GRAD_OK) return s;
  unsigned char *bytes = caller;
  const size_t head = sizeof(size_t);
  size_t known = size < lib_size ? size : lib_size;
  memcpy(bytes + head, (const unsigned char *)value + head, known - head);
  if (size > lib_size) memset(bytes + lib_size, 0, size - lib_size);
  return GRAD_OK;
}
