/*
 * Address space for OpenBLAS's GEMM buffers, checked before the first call.
 *
 * OpenBLAS (0.3.21, Debian) takes one buffer of GRAD__BLAS_BUFFER_BYTES per
 * thread that runs a GEMM, with malloc, the first time that thread needs
 * one, and keeps it. When the allocation fails it retries forever: under an
 * address-space limit (ulimit -v) a process spins instead of failing. So
 * before a thread's first BLAS call, when such a limit is set, we allocate
 * and free the space its buffers will take; if that fails the call returns
 * GRAD_E_NOMEM instead of entering OpenBLAS. Without a limit nothing is
 * checked (the kernel then overcommits, and OpenBLAS's malloc succeeds).
 */
#include <stdlib.h>
#include <sys/resource.h>

#include "core.h"
#include "threading.h"

/* What the probe covers on this thread: the number of OpenBLAS threads it
 * was made for (0: not yet). More threads later need a new probe. */
static _Thread_local int covered_threads;

static bool limited(int resource, rlim_t *limit) {
  struct rlimit r;
  if (getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return false;
  *limit = r.rlim_cur;
  return true;
}

grad_status grad__blas_memory_check(const char *what) {
  int threads = grad__blas_threads();
  if (threads < 1) threads = 1;
  if (covered_threads >= threads) return GRAD_OK;
  rlim_t as_limit = 0, data_limit = 0;
  bool as = limited(RLIMIT_AS, &as_limit), data = limited(RLIMIT_DATA, &data_limit);
  if (!as && !data) {
    covered_threads = threads;
    return GRAD_OK;
  }
  size_t bytes = (size_t)threads * GRAD__BLAS_BUFFER_BYTES;
  void *probe = malloc(bytes); /* plain malloc: what OpenBLAS will call */
  if (!probe) {
    rlim_t limit = as ? as_limit : data_limit;
    return grad__fail(GRAD_E_NOMEM,
                      "%s: not enough memory for OpenBLAS: its GEMM buffers need %zu MB "
                      "(%zu MB for each of %d thread%s) and the %s limit of %llu MB "
                      "(ulimit %s) leaves less; raise the limit or use fewer threads",
                      what, bytes >> 20, (size_t)GRAD__BLAS_BUFFER_BYTES >> 20, threads, threads == 1 ? "" : "s",
                      as ? "address-space" : "data-segment", (unsigned long long)(limit >> 20),
                      as ? "-v" : "-d");
  }
  free(probe);
  covered_threads = threads;
  return GRAD_OK;
}

int grad__blas_threads_that_fit(int threads) {
  rlim_t limit;
  if (!limited(RLIMIT_AS, &limit) && !limited(RLIMIT_DATA, &limit)) return threads;
  for (; threads > 1; threads--) {
    void *probe = malloc((size_t)threads * GRAD__BLAS_BUFFER_BYTES);
    if (probe) {
      free(probe);
      break;
    }
  }
  return threads;
}
