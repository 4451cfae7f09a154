/* Checked allocation with a failure-injection hook for tests. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Negative: never fail. Otherwise the number of allocations still allowed. */
static atomic_long fail_countdown = -1;

void grad__alloc_fail_after(long count) { atomic_store(&fail_countdown, count < 0 ? -1 : count); }

static bool injected_failure(void) {
  long left = atomic_load(&fail_countdown);
  while (left >= 0) {
    if (left == 0) return true;
    if (atomic_compare_exchange_weak(&fail_countdown, &left, left - 1)) return false;
  }
  return false;
}

void *grad__malloc(size_t bytes) {
  if (injected_failure()) return NULL;
  return malloc(bytes ? bytes : 1);
}

void *grad__calloc(size_t count, size_t size) {
  if (injected_failure()) return NULL;
  if (count == 0 || size == 0) return calloc(1, 1);
  return calloc(count, size);
}

void *grad__malloc_array(size_t count, size_t size) {
  size_t bytes;
  if (!grad__mul_size(count, size, &bytes)) return NULL;
  return grad__malloc(bytes);
}

void *grad__realloc(void *ptr, size_t bytes) {
  if (injected_failure()) return NULL;
  return realloc(ptr, bytes ? bytes : 1);
}

void grad__free(void *ptr) { free(ptr); }

char *grad__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = grad__malloc(n);
  if (copy) memcpy(copy, s, n);
  return copy;
}
