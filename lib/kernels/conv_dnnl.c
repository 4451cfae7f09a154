/*
 * Training convolutions on oneDNN (conv_dnnl.h). Per shape: the three
 * convolution primitives in the layouts oneDNN picks ("any"), and for each
 * tensor that the caller holds in another layout a reorder in or out. The
 * gradient outputs always leave through a reorder with a sum post-op, which
 * adds them into the caller's buffers in the same pass. Every primitive
 * takes its scratchpad from the caller's workspace (user scratchpad mode), so
 * nothing is allocated per call and sets used by different threads share no
 * memory.
 *
 * Threads: a call's images are split into one contiguous share per thread,
 * and the shares run side by side on libgrad's sleeping pool
 * (grad__parallel_threads), each on single-threaded primitives of its own
 * (a shape per share: the memory objects carry the share's buffers). No
 * OpenMP team runs, so no thread spins between primitives, which on shared
 * cores cost more than the convolutions (docs/training.md). The forward and
 * the data gradient are per image; the weight gradient of share p > 0 goes
 * to a buffer of its own, and the caller adds those into dweight in share
 * order after share 0 added its own: the same sums in the same order on
 * every run with the same thread count.
 */
#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "conv_dnnl.h"
#include "threading.h"

enum { SHAPES = 32, PARTS_MAX = 16 };

typedef struct prim {
  dnnl_primitive_t p;
  dnnl_memory_t scratch;  /* NULL when the primitive needs none */
} prim;

/* A tensor between the caller's layout (user) and a primitive's (inner). */
typedef struct operand {
  prim reorder;  /* NULL p: the primitive uses the caller's buffer directly */
  dnnl_memory_t user, inner;
  size_t inner_bytes;
} operand;

typedef struct shape {
  grad__conv conv;
  grad_precision precision;
  int n, h, w;
  int part;  /* the share of a call that uses it (its memory objects hold the share's buffers) */
  prim fwd, bwd_data, bwd_weights;
  operand f_src, f_wei, f_dst;    /* forward */
  operand d_ddst, d_wei, d_dsrc;  /* backward data; d_dsrc adds into dx */
  operand w_src, w_ddst, w_dwei;  /* backward weights; w_dwei adds into dweight */
  size_t scratch_bytes;           /* the largest scratchpad of all of them */
  size_t forward_bytes, backward_bytes; /* workspace a call takes: scratchpad, reorders, partial dW */
  bool ddst_shared;               /* both backward passes read dy in one layout */
  bool gemm_data;                 /* the data gradient by sgemm (1x1 in N,C,H,W, fp32) */
} shape;

struct grad__conv_dnnl_set {
  dnnl_stream_t streams[PARTS_MAX]; /* one per share, made on first use */
  shape *shapes[SHAPES];
  int count, next_evict;
};

static struct {
  pthread_once_t once;
  dnnl_engine_t engine;
  dnnl_status_t status;
} cpu = {PTHREAD_ONCE_INIT, NULL, dnnl_success};

static void engine_init(void) { cpu.status = dnnl_engine_create(&cpu.engine, dnnl_cpu, 0); }

static grad_status fail_dnnl(dnnl_status_t s, const char *what, const grad__conv *c) {
  grad_status st = s == dnnl_out_of_memory ? GRAD_E_NOMEM
                   : s == dnnl_unimplemented ? GRAD_E_UNSUPPORTED
                                             : GRAD_E_INTERNAL;
  return grad__fail(st, "oneDNN %s of a %dx%d convolution %d -> %d (stride %d, pad %d): status %d",
                    what, c->kernel, c->kernel, c->in_channels, c->out_channels, c->stride,
                    c->pad, (int)s);
}

#define TRY(call, what)                                   \
  do {                                                     \
    dnnl_status_t s_ = (call);                             \
    if (s_ != dnnl_success) return fail_dnnl(s_, what, conv); \
  } while (0)

static dnnl_status_t attr_create(bool sum, dnnl_primitive_attr_t *attr) {
  dnnl_status_t s = dnnl_primitive_attr_create(attr);
  if (s != dnnl_success) return s;
  s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
  if (s == dnnl_success && sum) {
    dnnl_post_ops_t ops;
    s = dnnl_post_ops_create(&ops);
    if (s != dnnl_success) return s;
    s = dnnl_post_ops_append_sum(ops, 1.0f);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(*attr, ops);
    dnnl_post_ops_destroy(ops);
  }
  return s;
}

/* The primitive of pd, and a memory object for its scratchpad if it has one. */
static dnnl_status_t prim_create(const_dnnl_primitive_desc_t pd, prim *out, size_t *scratch) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
  if (bytes > 0) {
    dnnl_status_t s = dnnl_memory_create(&out->scratch, md, cpu.engine, DNNL_MEMORY_NONE);
    if (s != dnnl_success) return s;
    if (bytes > *scratch) *scratch = bytes;
  }
  return dnnl_primitive_create(&out->p, pd);
}

static void prim_destroy(prim *p) {
  if (p->p) dnnl_primitive_destroy(p->p);
  if (p->scratch) dnnl_memory_destroy(p->scratch);
  p->p = NULL;
  p->scratch = NULL;
}

typedef enum { OPERAND_IN, OPERAND_OUT, OPERAND_ADD } operand_kind;

static dnnl_status_t operand_init(operand *op, const dnnl_memory_desc_t *user,
                                  const dnnl_memory_desc_t *inner, operand_kind kind,
                                  size_t *scratch) {
  dnnl_status_t s = dnnl_memory_create(&op->user, user, cpu.engine, DNNL_MEMORY_NONE);
  if (s == dnnl_success) s = dnnl_memory_create(&op->inner, inner, cpu.engine, DNNL_MEMORY_NONE);
  if (s != dnnl_success) return s;
  op->inner_bytes = dnnl_memory_desc_get_size(inner);
  if (kind != OPERAND_ADD && dnnl_memory_desc_equal(user, inner)) return dnnl_success;
  dnnl_primitive_attr_t attr;
  s = attr_create(kind == OPERAND_ADD, &attr);
  if (s != dnnl_success) return s;
  dnnl_primitive_desc_t pd;
  s = kind == OPERAND_IN
          ? dnnl_reorder_primitive_desc_create(&pd, user, cpu.engine, inner, cpu.engine, attr)
          : dnnl_reorder_primitive_desc_create(&pd, inner, cpu.engine, user, cpu.engine, attr);
  dnnl_primitive_attr_destroy(attr);
  if (s != dnnl_success) return s;
  s = prim_create(pd, &op->reorder, scratch);
  dnnl_primitive_desc_destroy(pd);
  return s;
}

static void operand_destroy(operand *op) {
  prim_destroy(&op->reorder);
  if (op->user) dnnl_memory_destroy(op->user);
  if (op->inner) dnnl_memory_destroy(op->inner);
}

static void shape_free(shape *sh) {
  if (!sh) return;
  prim_destroy(&sh->fwd);
  prim_destroy(&sh->bwd_data);
  prim_destroy(&sh->bwd_weights);
  operand *ops[] = {&sh->f_src, &sh->f_wei, &sh->f_dst, &sh->d_ddst, &sh->d_wei,
                    &sh->d_dsrc, &sh->w_src, &sh->w_ddst, &sh->w_dwei};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) operand_destroy(ops[i]);
  grad__free(sh);
}

static const dnnl_memory_desc_t *md_of(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
  return dnnl_primitive_desc_query_md(pd, what, 0);
}

static size_t weight_floats(const grad__conv *c) {
  return (size_t)c->out_channels * c->in_channels * c->kernel * c->kernel;
}

/* Descriptors, primitives and reorders of one shape. */
static grad_status shape_build(shape *sh) {
  const grad__conv *conv = &sh->conv;
  const int oh = grad__conv_out_size(conv, sh->h), ow = grad__conv_out_size(conv, sh->w);
  const dnnl_dims_t src_dims = {sh->n, conv->in_channels, sh->h, sh->w};
  const dnnl_dims_t dst_dims = {sh->n, conv->out_channels, oh, ow};
  const dnnl_dims_t wei_dims = {conv->out_channels, conv->in_channels, conv->kernel,
                                conv->kernel};
  const dnnl_dims_t strides = {conv->stride, conv->stride}, pad = {conv->pad, conv->pad};
  dnnl_memory_desc_t src, dst, wei, src_any, dst_any, wei_any;
  TRY(dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_nchw), "layout");
  TRY(dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_nchw), "layout");
  TRY(dnnl_memory_desc_init_by_tag(&wei, 4, wei_dims, dnnl_f32, dnnl_oihw), "layout");
  /* 1x1 convolutions run in the caller's N,C,H,W layout (oneDNN's GEMM-based
   * kernels), so their operands need no reorders: measured 8% faster on the
   * CRAD-s training epoch, 3% on CRAD, the same on the BasicBlock decoder
   * (bench_train, 2 threads, Zen 4). */
  const bool plain = conv->kernel == 1;
  /* Their data gradient W^T dy is one sgemm per image, which adds into dx
   * (or sets it) in place: the primitive's output would take a reorder
   * pass to be added, a pass over the whole of dx (docs/training.md). */
  sh->gemm_data = plain && conv->stride == 1 && conv->pad == 0 &&
                  sh->precision != GRAD_PRECISION_BF16;
  /* bf16: activations, weights and dy in bf16, the weight gradient in fp32
   * (it is summed over the batch and added to fp32 master weights). */
  const bool bf16 = sh->precision == GRAD_PRECISION_BF16;
  const dnnl_data_type_t t = bf16 ? dnnl_bf16 : dnnl_f32;
  const dnnl_format_tag_t act_tag = plain ? dnnl_nchw : dnnl_format_tag_any,
                          wei_tag = plain ? dnnl_oihw : dnnl_format_tag_any;
  dnnl_memory_desc_t dwei_any;
  TRY(dnnl_memory_desc_init_by_tag(&src_any, 4, src_dims, t, act_tag), "layout");
  TRY(dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, t, act_tag), "layout");
  TRY(dnnl_memory_desc_init_by_tag(&wei_any, 4, wei_dims, t, wei_tag), "layout");
  TRY(dnnl_memory_desc_init_by_tag(&dwei_any, 4, wei_dims, dnnl_f32, wei_tag), "layout");

  dnnl_primitive_attr_t attr;
  TRY(attr_create(false, &attr), "attributes");
  dnnl_convolution_desc_t fd, dd, wd;
  dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
  dnnl_status_t s = dnnl_unimplemented;
  /* Winograd F(4x4, 3x3) first where oneDNN has it for this CPU and shape
   * (3x3 stride 1, channels in multiples of the vector width, fp32 only): a
   * quarter of the multiplications, measured 1.5 to 2.8 times faster than
   * the direct kernels on every pass (docs/training.md); else the direct
   * kernels. */
  const dnnl_alg_kind_t algs[] = {dnnl_convolution_winograd, dnnl_convolution_direct};
  const bool winograd = conv->kernel == 3 && conv->stride == 1 && !bf16;
  for (int a = winograd ? 0 : 1; a < 2 && s != dnnl_success; a++) {
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    fpd = dpd = NULL;
    s = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, algs[a], &src_any,
                                           &wei_any, NULL, &dst_any, strides, pad, pad);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&fpd, &fd, attr, cpu.engine, NULL);
    /* no data-gradient primitive where an sgemm takes that pass */
    if (s == dnnl_success && !sh->gemm_data)
      s = dnnl_convolution_backward_data_desc_init(&dd, algs[a], &src_any, &wei_any, &dst_any,
                                                   strides, pad, pad);
    if (s == dnnl_success && !sh->gemm_data)
      s = dnnl_primitive_desc_create(&dpd, &dd, attr, cpu.engine, fpd);
    if (s == dnnl_success)
      s = dnnl_convolution_backward_weights_desc_init(&wd, algs[a], &src_any, &dwei_any, NULL,
                                                      &dst_any, strides, pad, pad);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&wpd, &wd, attr, cpu.engine, fpd);
  }
  dnnl_primitive_attr_destroy(attr);
  size_t *scratch = &sh->scratch_bytes;
  if (s == dnnl_success) s = prim_create(fpd, &sh->fwd, scratch);
  if (s == dnnl_success && dpd) s = prim_create(dpd, &sh->bwd_data, scratch);
  if (s == dnnl_success) s = prim_create(wpd, &sh->bwd_weights, scratch);
  if (s == dnnl_success)
    s = operand_init(&sh->f_src, &src, md_of(fpd, dnnl_query_src_md), OPERAND_IN, scratch);
  if (s == dnnl_success)
    s = operand_init(&sh->f_wei, &wei, md_of(fpd, dnnl_query_weights_md), OPERAND_IN, scratch);
  if (s == dnnl_success)
    s = operand_init(&sh->f_dst, &dst, md_of(fpd, dnnl_query_dst_md), OPERAND_OUT, scratch);
  if (s == dnnl_success && dpd)
    s = operand_init(&sh->d_ddst, &dst, md_of(dpd, dnnl_query_diff_dst_md), OPERAND_IN,
                     scratch);
  if (s == dnnl_success && dpd)
    s = operand_init(&sh->d_wei, &wei, md_of(dpd, dnnl_query_weights_md), OPERAND_IN, scratch);
  if (s == dnnl_success && dpd)
    s = operand_init(&sh->d_dsrc, &src, md_of(dpd, dnnl_query_diff_src_md), OPERAND_ADD,
                     scratch);
  if (s == dnnl_success)
    s = operand_init(&sh->w_src, &src, md_of(wpd, dnnl_query_src_md), OPERAND_IN, scratch);
  if (s == dnnl_success)
    s = operand_init(&sh->w_ddst, &dst, md_of(wpd, dnnl_query_diff_dst_md), OPERAND_IN,
                     scratch);
  if (s == dnnl_success)
    s = operand_init(&sh->w_dwei, &wei, md_of(wpd, dnnl_query_diff_weights_md), OPERAND_ADD,
                     scratch);
  if (s == dnnl_success) {
    sh->ddst_shared = dpd && dnnl_memory_desc_equal(md_of(dpd, dnnl_query_diff_dst_md),
                                                    md_of(wpd, dnnl_query_diff_dst_md));
    const operand *ops[] = {&sh->f_src, &sh->f_wei, &sh->f_dst, &sh->d_ddst, &sh->d_wei,
                            &sh->d_dsrc, &sh->w_src, &sh->w_ddst, &sh->w_dwei};
    sh->forward_bytes = grad__ws_round(sh->scratch_bytes);
    sh->backward_bytes =
        grad__ws_round(sh->scratch_bytes) + grad__ws_round(dnnl_memory_desc_get_size(&wei));
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
      if (ops[i]->reorder.p)
        *(i < 3 ? &sh->forward_bytes : &sh->backward_bytes) += grad__ws_round(ops[i]->inner_bytes);
  }
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (dpd) dnnl_primitive_desc_destroy(dpd);
  if (wpd) dnnl_primitive_desc_destroy(wpd);
  return s == dnnl_success ? GRAD_OK : fail_dnnl(s, "setup", conv);
}

grad_status grad__conv_dnnl_set_create(grad__conv_dnnl_set **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__conv_dnnl_set_create: out is NULL");
  *out = NULL;
  pthread_once(&cpu.once, engine_init);
  if (cpu.status != dnnl_success)
    return grad__fail(GRAD_E_UNSUPPORTED, "oneDNN: no CPU engine (status %d)", (int)cpu.status);
  grad__conv_dnnl_set *set = grad__calloc(1, sizeof *set);
  if (!set) return grad__fail(GRAD_E_NOMEM, "oneDNN convolution set: out of memory");
  *out = set;
  return GRAD_OK;
}

void grad__conv_dnnl_set_free(grad__conv_dnnl_set *set) {
  if (!set) return;
  for (int i = 0; i < set->count; i++) shape_free(set->shapes[i]);
  for (int i = 0; i < PARTS_MAX; i++)
    if (set->streams[i]) dnnl_stream_destroy(set->streams[i]);
  grad__free(set);
}

/* The primitives of (conv, n images, h x w) for share `part`, built on
 * first use (single-threaded: the caller runs this in a one-thread team);
 * the oldest shape makes room when the set is full. */
static grad_status shape_get(grad__conv_dnnl_set *set, const grad__conv *conv,
                             grad_precision precision, int n, int h, int w, int part,
                             shape **out) {
  for (int i = 0; i < set->count; i++) {
    shape *sh = set->shapes[i];
    if (sh->n == n && sh->h == h && sh->w == w && sh->part == part &&
        sh->precision == precision && !memcmp(&sh->conv, conv, sizeof *conv)) {
      *out = sh;
      return GRAD_OK;
    }
  }
  if (grad__conv_out_size(conv, h) <= 0 || grad__conv_out_size(conv, w) <= 0)
    return grad__fail(GRAD_E_SHAPE, "convolution input %dx%d is smaller than its %dx%d kernel",
                      h, w, conv->kernel, conv->kernel);
  shape *sh = grad__calloc(1, sizeof *sh);
  if (!sh) return grad__fail(GRAD_E_NOMEM, "oneDNN convolution: out of memory");
  sh->conv = *conv;
  sh->precision = precision;
  sh->n = n;
  sh->h = h;
  sh->w = w;
  sh->part = part;
  grad_status st = shape_build(sh);
  if (st != GRAD_OK) {
    shape_free(sh);
    return st;
  }
  int slot = set->count < SHAPES ? set->count++ : set->next_evict++ % SHAPES;
  if (set->shapes[slot]) shape_free(set->shapes[slot]);
  set->shapes[slot] = sh;
  *out = sh;
  return GRAD_OK;
}

/* One share of a call: its images, shape, stream and workspace. */
typedef struct run {
  const grad__conv *conv;
  shape *sh;
  dnnl_stream_t stream;
  int first, count;  /* images [first, first + count) of the call */
  char *buffer;      /* the share's workspace (forward_ or backward_bytes), handed out by take() */
  size_t used;
  float *partial_dw; /* shares after the first: their own dL/dW (else NULL) */
} run;

static void *take(run *r, size_t bytes) {
  void *p = r->buffer + r->used;
  r->used += grad__ws_round(bytes);
  return p;
}

static dnnl_status_t execute(run *r, prim *p, int nargs, dnnl_exec_arg_t *args) {
  dnnl_exec_arg_t all[8];
  memcpy(all, args, sizeof(dnnl_exec_arg_t) * (size_t)nargs);
  if (p->scratch) { /* one after another: every primitive of the share shares one scratchpad */
    dnnl_memory_set_data_handle(p->scratch, r->buffer);
    all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
  }
  return dnnl_primitive_execute(p->p, r->stream, nargs, all);
}

/* The operand's inner memory bound to a buffer: the caller's own when no
 * reorder is needed, else the share's workspace; for inputs, the reorder is run. */
static dnnl_status_t bind(run *r, operand *op, const float *user, bool input) {
  dnnl_memory_set_data_handle(op->user, (void *)user);
  if (!op->reorder.p) {
    dnnl_memory_set_data_handle(op->inner, (void *)user);
    return dnnl_success;
  }
  dnnl_memory_set_data_handle(op->inner, take(r, op->inner_bytes));
  if (!input) return dnnl_success;
  dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, op->user}, {DNNL_ARG_TO, op->inner}};
  return execute(r, &op->reorder, 2, args);
}

/* Moves an output from the primitive's layout to the caller's (adding for OPERAND_ADD). */
static dnnl_status_t unbind(run *r, operand *op) {
  if (!op->reorder.p) return dnnl_success;
  dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, op->inner}, {DNNL_ARG_TO, op->user}};
  return execute(r, &op->reorder, 2, args);
}

/* What a call asks of every share. */
typedef struct call {
  const float *weight, *x, *dy;
  float *y, *dx, *dweight;
  size_t x_image, y_image; /* floats per image of x and of y */
  bool forward, dx_set;
  run runs[PARTS_MAX];
  grad__failure failure; /* the first to arrive */
} call;

static dnnl_status_t forward_share(call *c, run *r) {
  shape *sh = r->sh;
  const float *x = c->x + (size_t)r->first * c->x_image;
  float *y = c->y + (size_t)r->first * c->y_image;
  r->used = grad__ws_round(sh->scratch_bytes);
  dnnl_status_t s = bind(r, &sh->f_src, x, true);
  if (s == dnnl_success) s = bind(r, &sh->f_wei, c->weight, true);
  if (s == dnnl_success) s = bind(r, &sh->f_dst, y, false);
  if (s == dnnl_success) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, sh->f_src.inner},
                              {DNNL_ARG_WEIGHTS, sh->f_wei.inner},
                              {DNNL_ARG_DST, sh->f_dst.inner}};
    s = execute(r, &sh->fwd, 3, args);
  }
  if (s == dnnl_success) s = unbind(r, &sh->f_dst);
  return s;
}

static dnnl_status_t backward_share(call *c, run *r) {
  shape *sh = r->sh;
  const float *x = c->x + (size_t)r->first * c->x_image;
  const float *dy = c->dy + (size_t)r->first * c->y_image;
  r->used = grad__ws_round(sh->scratch_bytes);
  dnnl_status_t s = dnnl_success;
  float *dx = c->dx ? c->dx + (size_t)r->first * c->x_image : NULL;
  if (dx && sh->gemm_data) {
    /* dx_i (Cin x P) = W^T (Cin x Cout) dy_i (Cout x P) (+ dx_i) */
    const grad__conv *cv = r->conv;
    const size_t P = c->x_image / (size_t)cv->in_channels;
    for (int i = 0; i < r->count && s == dnnl_success; i++)
      s = dnnl_sgemm('T', 'N', cv->in_channels, (dnnl_dim_t)P, cv->out_channels, 1.0f,
                     c->weight, cv->in_channels, dy + (size_t)i * c->y_image, (dnnl_dim_t)P,
                     c->dx_set ? 0.0f : 1.0f, dx + (size_t)i * c->x_image, (dnnl_dim_t)P);
  } else if (dx) {
    if (c->dx_set) memset(dx, 0, sizeof(float) * c->x_image * (size_t)r->count);
    s = bind(r, &sh->d_ddst, dy, true);
    if (s == dnnl_success) s = bind(r, &sh->d_wei, c->weight, true);
    if (s == dnnl_success) s = bind(r, &sh->d_dsrc, dx, false);
    if (s == dnnl_success) {
      dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, sh->d_ddst.inner},
                                {DNNL_ARG_WEIGHTS, sh->d_wei.inner},
                                {DNNL_ARG_DIFF_SRC, sh->d_dsrc.inner}};
      s = execute(r, &sh->bwd_data, 3, args);
    }
    if (s == dnnl_success) s = unbind(r, &sh->d_dsrc);
  }
  if (s != dnnl_success || !c->dweight) return s;
  s = bind(r, &sh->w_src, x, true);
  /* dy in the weights primitive's layout: often the one just made for the data pass. */
  if (s == dnnl_success && dx && !sh->gemm_data && sh->ddst_shared) {
    void *inner = NULL;
    dnnl_memory_get_data_handle(sh->d_ddst.inner, &inner);
    dnnl_memory_set_data_handle(sh->w_ddst.inner, inner);
  } else if (s == dnnl_success) {
    s = bind(r, &sh->w_ddst, dy, true);
  }
  float *dweight = c->dweight;
  if (r->partial_dw) { /* this share's own sum, added by the caller afterwards */
    dweight = r->partial_dw;
    memset(dweight, 0, sizeof(float) * weight_floats(r->conv));
  }
  if (s == dnnl_success) s = bind(r, &sh->w_dwei, dweight, false);
  if (s == dnnl_success) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, sh->w_src.inner},
                              {DNNL_ARG_DIFF_DST, sh->w_ddst.inner},
                              {DNNL_ARG_DIFF_WEIGHTS, sh->w_dwei.inner}};
    s = execute(r, &sh->bwd_weights, 3, args);
  }
  if (s == dnnl_success) s = unbind(r, &sh->w_dwei);
  return s;
}

static void share(void *ctx, int part, int parts) {
  (void)parts;
  call *c = ctx;
  run *r = &c->runs[part];
  grad__team_scope scope = grad__team_enter(1); /* reorders size their split when they run */
  dnnl_status_t s = c->forward ? forward_share(c, r) : backward_share(c, r);
  if (s == dnnl_success) s = dnnl_stream_wait(r->stream);
  grad__team_leave(scope);
  if (s != dnnl_success)
    grad__failure_note(&c->failure, 0, fail_dnnl(s, c->forward ? "forward" : "backward", r->conv));
}

/* Splits n images into one share per thread (at most PARTS_MAX, at most
 * n), makes what each needs and runs them; afterwards adds the shares'
 * partial weight gradients into c->dweight in share order. */
static grad_status run_call(grad__conv_dnnl_set *set, const grad__conv *conv,
                            grad_precision precision, int n, int h, int w, grad_workspace *ws,
                            call *c) {
  int parts = grad__threads(ws);
  if (parts > PARTS_MAX) parts = PARTS_MAX;
  if (parts > n) parts = n;
  if (parts < 1) parts = 1;
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  c->x_image = (size_t)conv->in_channels * h * w;
  c->y_image = (size_t)conv->out_channels * (oh > 0 ? oh : 0) * (ow > 0 ? ow : 0);
  size_t mark = grad__ws_mark(ws);
  grad_status st = GRAD_OK;
  /* primitives made with one thread: oneDNN fixes a primitive's split then */
  grad__team_scope scope = grad__team_enter(1);
  for (int p = 0; p < parts && st == GRAD_OK; p++) {
    run *r = &c->runs[p];
    r->conv = conv;
    r->first = (int)((long long)n * p / parts);
    r->count = (int)((long long)n * (p + 1) / parts) - r->first;
    st = shape_get(set, conv, precision, r->count, h, w, p, &r->sh);
    if (st == GRAD_OK && !set->streams[p]) {
      dnnl_status_t s = dnnl_stream_create(&set->streams[p], cpu.engine, dnnl_stream_default_flags);
      if (s != dnnl_success) st = fail_dnnl(s, "stream", conv);
    }
    r->stream = set->streams[p];
    const size_t bytes = st != GRAD_OK    ? 0
                         : c->forward ? r->sh->forward_bytes
                                      : r->sh->backward_bytes;
    if (st == GRAD_OK && !(r->buffer = grad__ws_alloc(ws, bytes)))
      st = grad__fail(GRAD_E_NOMEM, "oneDNN convolution: no workspace for its buffers");
    /* the partial dW sits after the reorder buffers, which never reach it */
    const size_t dw_bytes = grad__ws_round(sizeof(float) * weight_floats(conv));
    r->partial_dw =
        st == GRAD_OK && p > 0 && c->dweight ? (float *)(r->buffer + bytes - dw_bytes) : NULL;
  }
  grad__team_leave(scope);
  if (st == GRAD_OK) {
    grad__failure_init(&c->failure);
    grad__parallel_threads(parts, parts, share, c);
    st = grad__failure_raise(&c->failure);
  }
  if (st == GRAD_OK && c->dweight) {
    const size_t count = weight_floats(conv);
    for (int p = 1; p < parts; p++) {
      const float *part = c->runs[p].partial_dw;
      for (size_t i = 0; i < count; i++) c->dweight[i] += part[i];
    }
  }
  grad__ws_release(ws, mark);
  return st;
}

grad_status grad__conv_dnnl_forward(grad__conv_dnnl_set *set, const grad__conv *conv,
                                    grad_precision precision, const float *weight,
                                    const float *x, int n, int h, int w, float *y,
                                    grad_workspace *ws) {
  call c = {.weight = weight, .x = x, .y = y, .forward = true};
  return run_call(set, conv, precision, n, h, w, ws, &c);
}

grad_status grad__conv_dnnl_backward(grad__conv_dnnl_set *set, const grad__conv *conv,
                                     grad_precision precision, const float *weight,
                                     const float *x, int n, int h, int w, const float *dy,
                                     float *dx, bool dx_set, float *dweight,
                                     grad_workspace *ws) {
  call c = {.weight = weight, .x = x, .dy = dy, .dx = dx, .dx_set = dx_set, .dweight = dweight};
  return run_call(set, conv, precision, n, h, w, ws, &c);
}
