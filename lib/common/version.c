/* Run-time version and process-wide thread settings. */
#include <cblas.h>

#include "core.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

const char *grad_version_string(void) {
  return STRINGIFY(GRAD_VERSION_MAJOR) "." STRINGIFY(GRAD_VERSION_MINOR) "." STRINGIFY(
      GRAD_VERSION_PATCH);
}

int grad_version_number(void) { return GRAD_VERSION_NUMBER; }

void grad_threads_set(int threads) {
  if (threads <= 0) threads = openblas_get_num_procs();
  openblas_set_num_threads(threads);
}

int grad_threads_get(void) { return openblas_get_num_threads(); }

const char *grad_blas_core(void) { return openblas_get_corename(); }
