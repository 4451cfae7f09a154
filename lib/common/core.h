/*
 * Internal core of libgrad: error reporting, checked allocation and the
 * workspace arena. Every library file includes this; nothing here is public.
 * Internal non-static names start with grad__.
 */
#ifndef GRAD_CORE_H
#define GRAD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grad/common.h>

#if defined(__GNUC__)
#  define GRAD__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#  define GRAD__PRINTF(fmt, args)
#endif

/*
 * Records a detailed message for grad_last_error() on this thread and
 * returns status, so failures read `return grad__fail(GRAD_E_IO, "...", ...)`.
 */
grad_status grad__fail(grad_status status, const char *fmt, ...) GRAD__PRINTF(2, 3);

/*
 * Prefixes the current message with context ("loading model.st: " + old
 * message) and returns status unchanged, for errors passed up a layer.
 */
grad_status grad__fail_context(grad_status status, const char *fmt, ...) GRAD__PRINTF(2, 3);

/* ---- Allocation --------------------------------------------------------
 * All library memory goes through these, so tests can make the N-th
 * allocation fail and check that GRAD_E_NOMEM comes back cleanly. They
 * return NULL on failure (or overflow) without setting a message: the
 * caller says what it was allocating. */
void *grad__malloc(size_t bytes);
void *grad__calloc(size_t count, size_t size);
/* count * size bytes, NULL on overflow. */
void *grad__malloc_array(size_t count, size_t size);
void *grad__realloc(void *ptr, size_t bytes);
void grad__free(void *ptr);
char *grad__strdup(const char *s);

/* Test hook: the allocation after `count` further successful ones fails;
 * a negative count switches failure injection off (the default). */
void grad__alloc_fail_after(long count);

/* a * b into *out; false on size_t overflow. */
static inline bool grad__mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return false;
  *out = a * b;
  return true;
}

/* ---- BLAS ----------------------------------------------------------------
 * OpenBLAS's per-thread GEMM buffer (BUFFER_SIZE of Debian's 0.3.21 build,
 * 128 MB, plus its alignment page), which it allocates on a thread's first
 * call and retries forever when that fails. */
#define GRAD__BLAS_BUFFER_BYTES ((size_t)(128u << 20) + ((size_t)1 << 16))

/* Call before BLAS: GRAD_E_NOMEM (naming `what` and the limit) when an
 * address-space or data limit leaves no room for the buffers OpenBLAS will
 * take; once a thread's buffers exist it costs nothing. See blas_memory.c. */
grad_status grad__blas_memory_check(const char *what);
/* The most threads, up to `threads` (at least 1), whose OpenBLAS buffers fit
 * the address-space or data limit; `threads` when there is none. */
int grad__blas_threads_that_fit(int threads);

/* ---- Workspace ---------------------------------------------------------
 * A bump arena. grad__ws_reset() makes all of it free again; memory handed
 * out since the last reset stays valid until the next reset. When a call
 * needs more than the arena holds it allocates an overflow block, and the
 * next reset merges everything into one block of the peak size, so after the
 * first call of a given size no further allocation happens. Pointers are
 * 64-byte aligned. */
void grad__ws_reset(grad_workspace *ws);
#define GRAD__WS_ALIGN 64
/* bytes rounded up to that alignment: the room a buffer takes in the arena
 * (or in any buffer cut into aligned parts), for sizing beforehand. */
static inline size_t grad__ws_round(size_t bytes) {
  return (bytes + GRAD__WS_ALIGN - 1) & ~(size_t)(GRAD__WS_ALIGN - 1);
}
/* NULL on allocation failure (message set). */
void *grad__ws_alloc(grad_workspace *ws, size_t bytes);
float *grad__ws_floats(grad_workspace *ws, size_t count);
/* Makes the arena one block of at least `bytes`, so later calls that need
 * no more allocate nothing. GRAD_E_NOMEM (message set) on failure. */
grad_status grad__ws_reserve(grad_workspace *ws, size_t bytes);
/* A mark to roll the arena back to, for scratch used inside one step. */
size_t grad__ws_mark(const grad_workspace *ws);
void grad__ws_release(grad_workspace *ws, size_t mark);
/* The workspace's own thread count (grad_workspace_threads_set); 0 when
 * unset. threading.h's grad__threads resolves it to a count. */
int grad__ws_threads(const grad_workspace *ws);

/* ---- Versioned structs ------------------------------------------------
 * Every public option and summary struct starts with size_t struct_size and
 * only ever gains fields at its end. One policy for all of them:
 *  - a caller built against an older, shorter definition is accepted: the
 *    fields its struct_size does not cover take their defaults;
 *  - a caller built against a newer, longer one is accepted when every byte
 *    this library does not know is zero (the newer fields left at their
 *    zero defaults), else refused with GRAD_E_INVALID_ARG naming the struct;
 *  - a size below the struct's first field, or absurdly large
 *    (uninitialised), is refused.
 * min_size is GRAD__STRUCT_MIN(type, first field after struct_size).
 * Fields that an older definition's tail padding covers are read from it:
 * the _init call filled them with their defaults. */
#define GRAD__STRUCT_MIN(type, first) (offsetof(type, first) + sizeof(((type *)0)->first))

/* The _init of a struct: zeroes the caller's `size` bytes, copies the
 * library's defaults (lib_size bytes) over the part both know, and sets
 * struct_size to size. Does nothing for NULL or a size below a size_t. */
void grad__struct_init(void *caller, size_t size, const void *defaults, size_t lib_size);

/* Input structs: `resolved` holds the library's defaults (lib_size bytes);
 * the fields the caller's struct covers are copied over them and
 * resolved->struct_size becomes lib_size. caller NULL leaves the defaults. */
grad_status grad__struct_read(const char *name, const void *caller, size_t min_size,
                              void *resolved, size_t lib_size);

/* Output structs: copies the fields of `value` (lib_size bytes) that the
 * caller's struct_size covers, and zeroes the caller's bytes past what this
 * library knows. caller must not be NULL; its struct_size is kept. */
grad_status grad__struct_write(const char *name, void *caller, size_t min_size, const void *value,
                               size_t lib_size);

#endif /* GRAD_CORE_H */
