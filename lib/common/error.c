/* Status names and the per-thread detailed error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

enum { MESSAGE_CAPACITY = 1024 };

static _Thread_local char last_message[MESSAGE_CAPACITY];

static const struct {
  const char *name;
  const char *description;
} status_table[] = {
  [GRAD_OK] = {"GRAD_OK", "success"},
  [GRAD_E_INVALID_ARG] = {"GRAD_E_INVALID_ARG", "invalid argument"},
  [GRAD_E_NOMEM] = {"GRAD_E_NOMEM", "out of memory"},
  [GRAD_E_IO] = {"GRAD_E_IO", "input/output error"},
  [GRAD_E_FORMAT] = {"GRAD_E_FORMAT", "corrupt or malformed file"},
  [GRAD_E_UNSUPPORTED] = {"GRAD_E_UNSUPPORTED", "unsupported variant"},
  [GRAD_E_SHAPE] = {"GRAD_E_SHAPE", "wrong shape"},
  [GRAD_E_MISSING] = {"GRAD_E_MISSING", "required item missing"},
  [GRAD_E_NUMERIC] = {"GRAD_E_NUMERIC", "NaN or infinite value"},
  [GRAD_E_TOO_LARGE] = {"GRAD_E_TOO_LARGE", "size beyond limits"},
  [GRAD_E_VERSION] = {"GRAD_E_VERSION", "newer, incompatible format version"},
  [GRAD_E_CANCELLED] = {"GRAD_E_CANCELLED", "cancelled by the caller"},
  [GRAD_E_STATE] = {"GRAD_E_STATE", "call not valid in this state"},
  [GRAD_E_INTERNAL] = {"GRAD_E_INTERNAL", "internal error"},
};

static bool status_known(grad_status status) {
  return (unsigned)status < sizeof status_table / sizeof status_table[0];
}

const char *grad_status_name(grad_status status) {
  return status_known(status) ? status_table[status].name : "GRAD_E_UNKNOWN";
}

const char *grad_status_describe(grad_status status) {
  return status_known(status) ? status_table[status].description : "unknown status code";
}

const char *grad_last_error(void) { return last_message; }

grad_status grad__fail(grad_status status, const char *fmt, ...) {
  /* Formatted aside first: an argument may be grad_last_error() itself. */
  char message[MESSAGE_CAPACITY];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  memcpy(last_message, message, sizeof message);
  return status;
}

grad_status grad__fail_context(grad_status status, const char *fmt, ...) {
  char previous[MESSAGE_CAPACITY];
  memcpy(previous, last_message, sizeof previous);
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(last_message, sizeof last_message, fmt, args);
  va_end(args);
  if (n >= 0 && (size_t)n < sizeof last_message)
    snprintf(last_message + n, sizeof last_message - (size_t)n, ": %s", previous);
  return status;
}
