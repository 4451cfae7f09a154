/* The workspace arena: one block of the peak size after the first call. */
#include <string.h>

#include "core.h"

typedef struct overflow_block {
  struct overflow_block *next;
  size_t mark_before;  /* arena total when this block was handed out */
  size_t bytes;
} overflow_block;

struct grad_workspace {
  void *raw;             /* what grad__malloc returned for the main block */
  char *base;            /* GRAD__WS_ALIGN-aligned start of the main block */
  size_t capacity;
  size_t used;
  size_t peak;           /* the largest total demand since creation */
  overflow_block *overflow;  /* newest first; once non-empty, base is full */
  size_t overflow_bytes;
  int threads;           /* grad_workspace_threads_set; 0: the process default */
};


static char *align_pointer(void *p) {
  uintptr_t u = (uintptr_t)p;
  return (char *)((u + GRAD__WS_ALIGN - 1) & ~(uintptr_t)(GRAD__WS_ALIGN - 1));
}

grad_status grad_workspace_create(grad_workspace **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_workspace_create: out is NULL");
  *out = grad__calloc(1, sizeof **out);
  if (!*out) return grad__fail(GRAD_E_NOMEM, "grad_workspace_create: out of memory");
  return GRAD_OK;
}

static void free_overflow(grad_workspace *ws, size_t mark) {
  while (ws->overflow && ws->overflow->mark_before >= mark) {
    overflow_block *b = ws->overflow;
    ws->overflow = b->next;
    ws->overflow_bytes -= b->bytes;
    grad__free(b);
  }
}

void grad_workspace_free(grad_workspace *ws) {
  if (!ws) return;
  free_overflow(ws, 0);
  grad__free(ws->raw);
  grad__free(ws);
}

void grad_workspace_threads_set(grad_workspace *ws, int threads) {
  if (ws) ws->threads = threads > 0 ? threads : 0;
}

int grad_workspace_threads_get(const grad_workspace *ws) { return ws ? ws->threads : 0; }

int grad__ws_threads(const grad_workspace *ws) { return ws->threads; }

size_t grad_workspace_bytes(const grad_workspace *ws) {
  return ws ? ws->capacity + ws->overflow_bytes : 0;
}

void grad__ws_reset(grad_workspace *ws) {
  /* Grows to the peak also when the overflow was already released (a
   * call's blocks go at its grad__ws_release): else every call would
   * allocate and free its overflow again. */
  bool grow = ws->overflow != NULL || ws->peak > ws->capacity;
  free_overflow(ws, 0);
  ws->used = 0;
  if (!grow) return;
  grad__free(ws->raw);
  ws->raw = grad__malloc(ws->peak + GRAD__WS_ALIGN);
  ws->base = ws->raw ? align_pointer(ws->raw) : NULL;
  ws->capacity = ws->raw ? ws->peak : 0;
}

grad_status grad__ws_reserve(grad_workspace *ws, size_t bytes) {
  if (bytes > ws->peak) ws->peak = grad__ws_round(bytes);
  if (!ws->overflow && ws->capacity >= ws->peak) return GRAD_OK;
  free_overflow(ws, 0);
  grad__free(ws->raw);
  ws->used = 0;
  ws->raw = grad__malloc(ws->peak + GRAD__WS_ALIGN);
  ws->base = ws->raw ? align_pointer(ws->raw) : NULL;
  ws->capacity = ws->raw ? ws->peak : 0;
  if (!ws->raw) return grad__fail(GRAD_E_NOMEM, "out of memory reserving %zu bytes of workspace", bytes);
  return GRAD_OK;
}

size_t grad__ws_mark(const grad_workspace *ws) { return ws->used + ws->overflow_bytes; }

void grad__ws_release(grad_workspace *ws, size_t mark) {
  free_overflow(ws, mark);
  if (mark <= ws->used) ws->used = mark;
}

void *grad__ws_alloc(grad_workspace *ws, size_t bytes) {
  size_t need = grad__ws_round(bytes ? bytes : 1);
  if (need < bytes) {
    grad__fail(GRAD_E_TOO_LARGE, "workspace request of %zu bytes overflows", bytes);
    return NULL;
  }
  size_t total = grad__ws_mark(ws);
  if (total + need > ws->peak) ws->peak = total + need;
  if (!ws->overflow && ws->capacity - ws->used >= need) {
    void *p = ws->base + ws->used;
    ws->used += need;
    return p;
  }
  size_t header = grad__ws_round(sizeof(overflow_block));
  overflow_block *b = grad__malloc(header + need + GRAD__WS_ALIGN);
  if (!b) {
    grad__fail(GRAD_E_NOMEM, "out of memory allocating %zu bytes of workspace", need);
    return NULL;
  }
  b->mark_before = total;
  b->bytes = need;
  b->next = ws->overflow;
  ws->overflow = b;
  ws->overflow_bytes += need;
  return align_pointer((char *)b + header);
}

float *grad__ws_floats(grad_workspace *ws, size_t count) {
  size_t bytes;
  if (!grad__mul_size(count, sizeof(float), &bytes)) {
    grad__fail(GRAD_E_TOO_LARGE, "workspace request of %zu floats overflows", count);
    return NULL;
  }
  return grad__ws_alloc(ws, bytes);
}
