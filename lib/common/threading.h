/*
 * The one home of threading and of the BLAS: the thread count of compute
 * calls, the pool for the memory-bound passes between GEMMs, the sgemm the
 * library's big products go through, and every openblas_* call. See
 * docs/guide.md ("Threads") for what is deterministic across thread counts.
 *
 * Threads: OpenBLAS's (inside cblas_*, never busy while our pool is) and
 * our sleeping pool, which also runs the oneDNN engine's images (and the
 * training convolutions' shares of a batch, conv_dnnl.c) side by side on
 * single-threaded primitives, and the parts of the products that run on
 * oneDNN's sgemm. oneDNN's OpenMP team is kept at one thread
 * (grad__team_enter) except where nothing else can use the threads.
 */
#ifndef GRAD_THREADING_H
#define GRAD_THREADING_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core.h"

/* OpenBLAS's own thread count (process-wide). */
int grad__blas_threads(void);

/* Threads of compute calls: the process default (grad_threads_set), or the
 * workspace's own count when one was set (grad_workspace_threads_set). */
int grad__threads(const grad_workspace *ws);

/*
 * Runs fn(ctx, part, parts) for part = 0 .. parts-1 on a small pool of
 * threads plus the caller (grad__threads(NULL) threads in all; parts may be
 * more), and returns when all are done. It serves the memory-bound passes
 * between OpenBLAS GEMMs (im2col, bias/residual/ReLU, pooling, resizing):
 * it never runs while a GEMM does, so it and OpenBLAS's threads are not
 * stacked. Workers sleep on a condition variable (no spinning). When
 * another thread's job holds the pool, the parts run on the caller. Safe to
 * call from many threads; survives fork (the child starts afresh).
 */
typedef void (*grad__part_fn)(void *ctx, int part, int parts);
void grad__parallel(int parts, grad__part_fn fn, void *ctx);
/* The same with `threads` threads in all instead of grad_threads_get()'s. */
void grad__parallel_threads(int threads, int parts, grad__part_fn fn, void *ctx);
/*
 * fn(ctx, item, part) for item = 0 .. items-1, on `parts` parts over the
 * pool (threads: grad__threads(NULL)); part p takes a contiguous range of
 * items in order and stops at its first failure. Returns GRAD_OK, or the
 * failure of the lowest item that failed, its message raised again on the
 * caller's thread (grad_last_error is per thread). For per-image work that
 * has no parallel pass of its own: decoding, the scoring head.
 */
/*
 * The failure of a job whose parts run on several threads, kept for the
 * caller (grad_last_error is per thread): grad__failure_note from any part
 * keeps the failure of the lowest rank (the first to arrive among equal
 * ranks) with its thread's message; grad__failure_raise, on the caller's
 * thread once the parts are done, returns GRAD_OK or that failure with its
 * message, and releases the lock.
 */
typedef struct grad__failure {
  pthread_mutex_t lock;
  int rank;
  grad_status status;
  char message[512];
} grad__failure;
void grad__failure_init(grad__failure *f);
void grad__failure_note(grad__failure *f, int rank, grad_status status);
grad_status grad__failure_raise(grad__failure *f);

typedef grad_status (*grad__item_fn)(void *ctx, int item, int part);
grad_status grad__parallel_items(int items, int parts, grad__item_fn fn, void *ctx);
/* Parts worth using for a pass over `floats` values: a few per thread, fewer
 * when the pass is small, 1 when it is too small to pay for waking a thread
 * or there is one thread. */
int grad__parallel_width(size_t floats);

/*
 * Row-major C = alpha * op(A) * op(B) + beta * C: the one door of the
 * library's products (the im2col engine, the decoder, the PCA projection).
 * It runs oneDNN's sgemm single-threaded on parts of C over the sleeping
 * pool with `threads` threads where oneDNN is built in (<= 0:
 * grad__threads(NULL)); the parts depend on the shape and the thread count
 * only, so results are the same on every run with that count. Else, or
 * when grad_gemm_engine_set chose it, OpenBLAS's cblas_sgemm on OpenBLAS's
 * process-wide threads.
 */
void grad__sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc, int threads);

/* Instruction sets, in order (AVX-512: F, BW, VL and DQ; AVX2 and AVX-512
 * with FMA). */
typedef enum grad__isa {
  GRAD__ISA_OLDER,
  GRAD__ISA_AVX,
  GRAD__ISA_AVX2,
  GRAD__ISA_AVX512
} grad__isa;
grad__isa grad__cpu_isa(void);

/* The engine (a grad_gemm_engine) products take now: GRAD_GEMM_ONEDNN where
 * oneDNN is built in, else GRAD_GEMM_OPENBLAS, unless grad_gemm_engine_set
 * chose one. */
int grad__gemm_engine_used(void);

/*
 * Runs the OpenMP-threaded code between enter and leave with `threads`
 * threads on the calling thread (OpenMP's thread count is per calling
 * thread), restoring the caller's own setting at leave. No-ops without
 * OpenMP.
 */
typedef struct grad__team_scope {
  int saved;
} grad__team_scope;
grad__team_scope grad__team_enter(int threads);
void grad__team_leave(grad__team_scope scope);
/* The threads an OpenMP team started here would have (1 without OpenMP). */
int grad__team_threads(void);
/* fn(ctx, part, parts) for parts = `threads` on an OpenMP team of that
 * many threads: the team oneDNN's primitives around the caller run on (a
 * pool beside its spinning threads would fight them for the cores). On
 * libgrad's pool where oneDNN (and with it OpenMP) is not built in, and
 * under ThreadSanitizer. */
void grad__team_parallel(int threads, grad__part_fn fn, void *ctx);

#endif /* GRAD_THREADING_H */
