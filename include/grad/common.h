/*
 * libgrad: version, status codes, error messages, workspaces and threads.
 * Included by <grad/grad.h>; every other public header builds on it.
 */
#ifndef GRAD_COMMON_H
#define GRAD_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <grad/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GRAD_API marks the exported calls; everything else is hidden. */
#if defined(GRAD_BUILDING) && defined(__GNUC__)
#  define GRAD_API __attribute__((visibility("default")))
#else
#  define GRAD_API
#endif

/* Calls that can fail return a grad_status the caller should look at. */
#if defined(__GNUC__)
#  define GRAD_NODISCARD __attribute__((warn_unused_result))
#else
#  define GRAD_NODISCARD
#endif

/*
 * Status codes. The numbers are part of the ABI: they are never changed or
 * reused, and new codes are only appended.
 */
typedef enum grad_status {
  GRAD_OK = 0,
  GRAD_E_INVALID_ARG = 1,  /* a NULL pointer, a size out of range, a bad option */
  GRAD_E_NOMEM = 2,        /* an allocation failed */
  GRAD_E_IO = 3,           /* a file could not be opened, read, written or renamed */
  GRAD_E_FORMAT = 4,       /* a file is corrupt or not what it claims to be */
  GRAD_E_UNSUPPORTED = 5,  /* valid, but a variant libgrad does not handle */
  GRAD_E_SHAPE = 6,        /* a tensor or image has the wrong shape */
  GRAD_E_MISSING = 7,      /* a tensor, key or file that is required is absent */
  GRAD_E_NUMERIC = 8,      /* NaN or Inf where finite numbers are required */
  GRAD_E_TOO_LARGE = 9,    /* a declared size beyond the library's limits */
  GRAD_E_VERSION = 10,     /* a file from a newer, incompatible format version */
  GRAD_E_CANCELLED = 11,   /* the caller's callback asked to stop */
  GRAD_E_STATE = 12,       /* the call is not valid in the handle's current state */
  GRAD_E_INTERNAL = 13     /* a bug in libgrad; please report it */
} grad_status;

/* "GRAD_E_FORMAT" for GRAD_E_FORMAT; "GRAD_E_UNKNOWN" for other values. */
GRAD_API const char *grad_status_name(grad_status status);

/* A one-line description of what the code means, in English. */
GRAD_API const char *grad_status_describe(grad_status status);

/*
 * The detailed message of the last call that failed on this thread: which
 * file, tensor, byte offset or argument, and why. It stays until the next
 * failing call on the same thread; a successful call does not clear it.
 * Never NULL; "" when nothing failed yet.
 */
GRAD_API const char *grad_last_error(void);

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
GRAD_API const char *grad_version_string(void);

/* GRAD_VERSION_NUMBER of the library actually linked. */
GRAD_API int grad_version_number(void);

/*
 * The process-wide default of threads used by compute calls; 0 means all
 * cores. The start-up default is OPENBLAS_NUM_THREADS, else all cores. A
 * workspace may override it for the calls that use it
 * (grad_workspace_threads_set). docs/guide.md ("Threads") says which
 * results are identical across thread counts.
 */
GRAD_API void grad_threads_set(int threads);
GRAD_API int grad_threads_get(void);

/* ---- Experimental tier --------------------------------------------------
 * Calls not yet promised: they may change or go in any release, and are
 * exported under their own symbol version (GRAD_EXPERIMENTAL, not GRAD_0),
 * so a program that uses them says so at build time by defining
 * GRAD_EXPERIMENTAL before including a libgrad header, and at link time by
 * the version it binds to. The synthetic data set (<grad/synth.h>) and the
 * BLAS diagnostics below are experimental.
 */
#ifdef GRAD_EXPERIMENTAL
/*
 * The name of the OpenBLAS kernel set in use ("SkylakeX", "Haswell", ...).
 * "Prescott" on a recent CPU means OpenBLAS did not recognise it and runs
 * its generic SSE3 kernels, several times slower: set OPENBLAS_CORETYPE
 * (e.g. SkylakeX or Haswell) in the environment before the program starts.
 * Never NULL ("unknown" when the BLAS cannot say). Thread-safe.
 */
GRAD_API const char *grad_blas_core(void);

/*
 * The instruction-set build of libgrad's own vector kernels (today the
 * fused depthwise convolution of the EfficientNet backbones), chosen once
 * from the CPU: "avx512", "avx2" or "baseline". Never NULL. Thread-safe.
 */
GRAD_API const char *grad_kernels_isa(void);

/*
 * Engines of the library's matrix products: the PCA projection, the
 * decoder's convolutions when scoring and the CRAD decoder's 1x1 ones in
 * training, the im2col engine's. GRAD_GEMM_OPENBLAS: OpenBLAS's sgemm on its
 * own threads. GRAD_GEMM_ONEDNN: oneDNN's sgemm (code chosen by CPU
 * features), one single-threaded sgemm per part of the product on libgrad's
 * pool of sleeping threads. GRAD_GEMM_AUTO, the default: oneDNN where it is
 * built in, else OpenBLAS. docs/guide.md ("Threads") has the measurements.
 */
typedef enum grad_gemm_engine {
  GRAD_GEMM_AUTO = 0,
  GRAD_GEMM_OPENBLAS = 1,
  GRAD_GEMM_ONEDNN = 2
} grad_gemm_engine;

/* Sets the engine of every product in the process from now on; call it
 * while no other thread computes. GRAD_E_UNSUPPORTED (nothing changed) for
 * GRAD_GEMM_ONEDNN where oneDNN is not built in; GRAD_E_INVALID_ARG for a
 * value not in the enum. */
GRAD_API grad_status grad_gemm_engine_set(grad_gemm_engine engine);

/*
 * The engine products run on now, in words: "OpenBLAS Cooperlake" (with the
 * kernel set's name) or "oneDNN sgemm". Never NULL. Thread-safe.
 */
GRAD_API const char *grad_gemm_engine_name(void);

/*
 * Row-major C = alpha * op(A) * op(B) + beta * C on the products' engine,
 * op(X) being X, or X transposed where trans_x is nonzero: op(A) is m x k,
 * op(B) k x n, C m x n, each row `ld` floats apart. threads <= 0:
 * grad_threads_get(); the OpenBLAS engine runs on OpenBLAS's process-wide
 * count (grad_threads_set) whatever threads says. The same inputs, engine
 * and thread count give the same bits. GRAD_E_INVALID_ARG for a negative
 * size, a NULL matrix or a leading dimension shorter than its row. For
 * benchmarks, and programs that want libgrad's choice of engine.
 * Thread-safe.
 */
GRAD_API grad_status grad_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                                const float *a, int lda, const float *b, int ldb, float beta,
                                float *c, int ldc, int threads);

/*
 * A sentence on why a thread could not start, for a program that starts
 * threads itself (before OpenBLAS does, say): err is pthread_create's
 * error, and the sentence names it and the limits involved (ulimit -u,
 * memory for thread stacks). Writes at most size bytes into buf, always
 * terminated when size > 0. Calls only libc, so it is safe before main.
 * Thread-safe.
 */
GRAD_API void grad_threads_explain(int err, char *buf, size_t size);
#endif /* GRAD_EXPERIMENTAL */

/*
 * Compute engines of the convolutions. GRAD_ENGINE_ONEDNN: oneDNN's
 * convolution primitives (JIT kernels chosen by CPU features at run time,
 * blocked layouts, fused bias/residual/ReLU), the default where libgrad was
 * built with oneDNN. GRAD_ENGINE_IM2COL: im2col + OpenBLAS's sgemm, the
 * portable engine.
 * GRAD_ENGINE_AUTO: the best available. docs/backbone.md compares them.
 */
typedef enum grad_engine {
  GRAD_ENGINE_AUTO = 0,
  GRAD_ENGINE_ONEDNN = 1,
  GRAD_ENGINE_IM2COL = 2
} grad_engine;

/*
 * Number format of the frozen backbone's arithmetic. BF16 stores weights
 * and activations as bfloat16 and accumulates in fp32; only where the CPU
 * does bf16 natively (AVX512_BF16 or AMX, found at run time) and with the
 * oneDNN engine. Features move by about 1e-2 relative (docs/backbone.md).
 */
typedef enum grad_precision { GRAD_PRECISION_FP32 = 0, GRAD_PRECISION_BF16 = 1 } grad_precision;

/* 1 when this build and this CPU can run the engine (AUTO: always) or the
 * precision with the oneDNN engine; else 0. */
GRAD_API int grad_engine_available(grad_engine engine);
GRAD_API int grad_precision_available(grad_precision precision);
/* "onednn", "im2col" for the engines (AUTO: the one it picks); "fp32",
 * "bf16" for the precisions; "unknown" otherwise. */
GRAD_API const char *grad_engine_name(grad_engine engine);
GRAD_API const char *grad_precision_name(grad_precision precision);

/*
 * A workspace holds the scratch memory of compute calls. It grows to what
 * the largest call needed and is then reused without further allocation.
 * One workspace serves one thread at a time: give each thread its own.
 */
typedef struct grad_workspace grad_workspace;

GRAD_API GRAD_NODISCARD grad_status grad_workspace_create(grad_workspace **out);
/* Frees the workspace; NULL is a no-op. */
GRAD_API void grad_workspace_free(grad_workspace *ws);
/* Bytes the workspace holds now. */
GRAD_API size_t grad_workspace_bytes(const grad_workspace *ws);

/*
 * Threads of the compute calls made with this workspace (a model's
 * context has its own: grad_context_threads_set), so two threads may
 * compute with different thread counts at once; threads <= 0 returns to the
 * process default (grad_threads_set). With the oneDNN engine every
 * convolution and product honours it; in a build without oneDNN the
 * products run on OpenBLAS, whose thread count is process-wide, and only
 * the passes between them follow it. NULL is a no-op. _get returns the
 * override, 0 when none.
 */
GRAD_API void grad_workspace_threads_set(grad_workspace *ws, int threads);
GRAD_API int grad_workspace_threads_get(const grad_workspace *ws);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_COMMON_H */
