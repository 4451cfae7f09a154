/* Run-time version and process-wide thread settings. */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "core.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

const char *grad_version_string(void) {
  return STRINGIFY(GRAD_VERSION_MAJOR) "." STRINGIFY(GRAD_VERSION_MINOR) "." STRINGIFY(
      GRAD_VERSION_PATCH);
}

int grad_version_number(void) { return GRAD_VERSION_NUMBER; }

void grad__threads_explain(int err, char *buf, size_t size) {
  struct rlimit nproc;
  char limit[32] = "unlimited";
  if (getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY)
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)nproc.rlim_cur);
  snprintf(buf, size,
           "cannot start a thread (%s): this user's limit on processes and threads "
           "(ulimit -u: %s) is reached, or there is no memory left for thread stacks",
           strerror(err), limit);
}

static void *do_nothing(void *arg) { return arg; }

/* How many of `wanted` extra threads can run at once: started together
 * (so they count against the limits together), then joined. */
static int startable_threads(int wanted, int *err) {
  pthread_t threads[64];
  int started = 0;
  *err = 0;
  if (wanted > 64) wanted = 64;
  while (started < wanted && (*err = pthread_create(&threads[started], NULL, do_nothing, NULL)) == 0)
    started++;
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  return started;
}

/*
 * OpenBLAS (0.3.21) does not check that the threads it starts here exist:
 * a thread it could not create is waited for forever, and each new thread
 * takes a 128 MB buffer at once, retrying forever when that fails. So the
 * count is first reduced to the threads that can start and whose buffers
 * fit any memory limit; grad_threads_get() then says what was set, and
 * grad_last_error() why it is less.
 */
void grad_threads_set(int threads) {
  if (threads <= 0) threads = openblas_get_num_procs();
  int err = 0, requested = threads;
  if (threads > 1) threads = 1 + startable_threads(threads - 1, &err);
  if (err) {
    char why[512];
    grad__threads_explain(err, why, sizeof why);
    grad__fail(GRAD_E_NOMEM, "grad_threads_set: using %d of %d threads: %s", threads, requested,
               why);
  }
  int fit = grad__blas_threads_that_fit(threads);
  if (fit < threads)
    grad__fail(GRAD_E_NOMEM,
               "grad_threads_set: using %d of %d threads: the memory limit (ulimit -v or -d) "
               "has no room for OpenBLAS's 128 MB buffer of each further thread",
               fit, requested);
  openblas_set_num_threads(fit);
}

int grad_threads_get(void) { return openblas_get_num_threads(); }

const char *grad_blas_core(void) { return openblas_get_corename(); }
