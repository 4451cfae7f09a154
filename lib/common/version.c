/* Run-time version. */
#include "core.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

const char *grad_version_string(void) {
  return STRINGIFY(GRAD_VERSION_MAJOR) "." STRINGIFY(GRAD_VERSION_MINOR) "." STRINGIFY(
      GRAD_VERSION_PATCH);
}

int grad_version_number(void) { return GRAD_VERSION_NUMBER; }
