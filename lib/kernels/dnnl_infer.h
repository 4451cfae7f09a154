/*
 * Inference on oneDNN primitives, shared by the two chains of convolutions
 * that run on them at scoring time: the backbone (backbone/resnet_dnnl.c)
 * and the store's decoder (lib/store/store_dnnl.c). Layouts, post-ops, the
 * choice of algorithm, weights laid out once, and how a call on n items
 * shares the threads: one way for both. Built only with oneDNN.
 */
#ifndef GRAD_DNNL_INFER_H
#define GRAD_DNNL_INFER_H

#include <stdbool.h>

#include "conv.h"
#include "dnnl_engine_internal.h"
#include "winograd_bf16.h"
#include "winograd_f32.h"

#ifdef GRAD_HAVE_ONEDNN

/* A 4-D layout n x c x h x w of type t in format tag. */
grad_status grad__dnnl_md4(dnnl_memory_desc_t *md, int n, int c, int h, int w,
                           dnnl_data_type_t t, dnnl_format_tag_t tag);

/* A reorder primitive from one layout to another. */
grad_status grad__dnnl_reorder_make(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                    dnnl_primitive_t *out, const char *what);

/* One argument of a primitive: its id, layout and buffer. */
typedef struct grad__dnnl_arg {
  int id;
  const dnnl_memory_desc_t *md;
  const void *data;
} grad__dnnl_arg;

/* Runs prim on the buffers of args (at most 6) on stream s. */
grad_status grad__dnnl_exec(dnnl_primitive_t prim, dnnl_stream_t s, const grad__dnnl_arg *args,
                            int count, const char *what);

/* An inference convolution with its operands' layouts: a oneDNN primitive,
 * or (winograd) one of libgrad's Winograd kernels (winograd.h), chosen by
 * the type of dst, whose weights md is one-dimensional, the mark
 * grad__dnnl_weights_lay knows it by. */
typedef struct grad__dnnl_conv {
  dnnl_primitive_t prim;
  dnnl_memory_desc_t src, wei, bias, dst, scratch;
  bool winograd, sum, relu;
  int n, threads;
  grad__wino wino;
} grad__dnnl_conv;

/*
 * The convolution `shape` on n maps of h x w in layout src (format "any"
 * lets oneDNN choose), output in grad__dnnl_act_tag()'s layout, type t
 * (f32 or bf16), fp32 bias, then the post-ops: sum (adds into what dst
 * holds: the residual) and ReLU. 3x3 stride-1 convolutions on blocked
 * src take libgrad's Winograd: in fp32 F(4x4, 3x3) on AVX-512, a quarter
 * of the multiplications (docs/backbone.md, "Engines"); in bf16 F(2x2,
 * 3x3) where the CPU's bf16 is AVX512_BF16 without AMX (docs/backbone.md,
 * "bf16"). The rest take oneDNN's direct kernels. The scratchpad is the caller's (DNNL_ARG_SCRATCHPAD,
 * out->scratch bytes). The primitive is made for `threads` threads of
 * OpenMP (grad__team_enter). out->prim is NULL on failure.
 */
grad_status grad__dnnl_conv_make(const grad__conv *shape, int n, int h, int w,
                                 const dnnl_memory_desc_t *src, dnnl_data_type_t t, bool sum,
                                 bool relu, grad__dnnl_conv *out, const char *what);
void grad__dnnl_conv_free(grad__dnnl_conv *c);

/* Runs c: dst (+)= conv(src, weights) + bias. */
grad_status grad__dnnl_conv_run(const grad__dnnl_conv *c, dnnl_stream_t s, const void *src,
                                const void *weights, const float *bias, void *dst, void *scratch,
                                const char *what);

/* A new buffer (grad__malloc; grad__free it) holding fp32 Cout,Cin,K,K
 * weights in layout md (converted to md's type), or transformed for the
 * Winograd kernel where md is a grad__dnnl_conv's one-dimensional mark. */
grad_status grad__dnnl_weights_lay(const float *oihw, const grad__conv *shape,
                                   const dnnl_memory_desc_t *md, void **out, const char *what);

/* Largest of *max and the bytes of md. */
void grad__dnnl_note_bytes(size_t *max, const dnnl_memory_desc_t *md);

/*
 * How a call on n items (images, maps) with `threads` threads runs: whole
 * groups of `workers` items are shared out over libgrad's sleeping pool,
 * each worker running whole items on single-threaded primitives (nothing
 * synchronises between layers, no OpenMP thread spins: docs/guide.md,
 * "Threads"); the `teamed` items left over (all of them for one item) run
 * one at a time on primitives made for an OpenMP team of `threads`, so one
 * item still gets every thread.
 */
typedef struct grad__dnnl_split {
  int pooled;   /* items shared out over the pool */
  int workers;  /* the pool's workers: buffer sets of the one-thread primitives */
  int teamed;   /* items left for the team's primitives */
} grad__dnnl_split;

grad__dnnl_split grad__dnnl_split_of(int n, int threads, int max_workers);

/* Item `item` on a stream; `worker` is the pool worker (0 for teamed
 * items), `team` says which primitives to use. */
typedef grad_status (*grad__dnnl_item_fn)(void *ctx, dnnl_stream_t s, int worker, int item,
                                          bool team);

/* Sets up, from ws, the buffers of pool worker `worker` for the
 * one-thread primitives, or (team) those of the team's primitives. */
typedef grad_status (*grad__dnnl_take_fn)(void *ctx, grad_workspace *ws, int worker, bool team);

/* Runs fn over items [0, n) as split says: the pooled items [0, pooled),
 * worker w on items w, w + workers, ... on its own stream (the first
 * failure is returned with its message, the others' dropped); then the
 * teamed items one at a time on the calling thread with `threads` threads
 * of OpenMP, in the same workspace memory. Everything taken from ws is
 * released before return. */
grad_status grad__dnnl_items_run(grad__dnnl_split split, int threads, grad_workspace *ws,
                                 grad__dnnl_take_fn take, grad__dnnl_item_fn fn, void *ctx);

#endif /* GRAD_HAVE_ONEDNN */
#endif /* GRAD_DNNL_INFER_H */
