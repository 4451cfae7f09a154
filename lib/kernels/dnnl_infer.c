/* Inference on oneDNN primitives, shared by the backbone and the decoder (dnnl_infer.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dnnl_infer.h"
#include "threading.h"

#ifdef GRAD_HAVE_ONEDNN

grad_status grad__dnnl_md4(dnnl_memory_desc_t *md, int n, int c, int h, int w,
                           dnnl_data_type_t t, dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {n, c, h, w};
  return grad__dnnl_check(dnnl_memory_desc_init_by_tag(md, 4, dims, t, tag), "a memory layout");
}

grad_status grad__dnnl_reorder_make(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                    dnnl_primitive_t *out, const char *what) {
  dnnl_primitive_desc_t pd = NULL;
  *out = NULL;
  grad_status st = grad__dnnl_check(
      dnnl_reorder_primitive_desc_create(&pd, from, grad__dnnl_engine(), to, grad__dnnl_engine(),
                                         NULL),
      what);
  if (st == GRAD_OK) st = grad__dnnl_check(dnnl_primitive_create(out, pd), what);
  dnnl_primitive_desc_destroy(pd);
  return st;
}

enum { MAX_ARGS = 6 };

grad_status grad__dnnl_exec(dnnl_primitive_t prim, dnnl_stream_t s, const grad__dnnl_arg *args,
                            int count, const char *what) {
  dnnl_exec_arg_t exec[MAX_ARGS];
  if (count > MAX_ARGS) return grad__fail(GRAD_E_INTERNAL, "%s: too many arguments", what);
  int made = 0;
  grad_status st = GRAD_OK;
  for (; made < count && st == GRAD_OK; made++) {
    exec[made].arg = args[made].id;
    st = grad__dnnl_check(dnnl_memory_create(&exec[made].memory, args[made].md,
                                             grad__dnnl_engine(), (void *)args[made].data),
                          what);
    if (st != GRAD_OK) break;
  }
  if (st == GRAD_OK) st = grad__dnnl_check(dnnl_primitive_execute(prim, s, count, exec), what);
  for (int i = 0; i < made; i++) dnnl_memory_destroy(exec[i].memory);
  return st;
}

static dnnl_primitive_attr_t make_attr(bool sum, bool relu) {
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
  dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if ((sum || relu) && dnnl_post_ops_create(&ops) == dnnl_success) {
    if (sum) dnnl_post_ops_append_sum(ops, 1.0f);
    if (relu) dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    dnnl_primitive_attr_set_post_ops(attr, ops);
    dnnl_post_ops_destroy(ops);
  }
  return attr;
}

/* The primitive descriptor of the direct convolution, or NULL where oneDNN
 * has none here. */
static dnnl_primitive_desc_t direct_pd(const grad__conv *s, const dnnl_memory_desc_t *src,
                                       const dnnl_memory_desc_t *wei,
                                       const dnnl_memory_desc_t *bias,
                                       const dnnl_memory_desc_t *dst, dnnl_primitive_attr_t attr) {
  dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
  dnnl_convolution_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  if (dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                         src, wei, bias, dst, strides, pad, pad) != dnnl_success ||
      dnnl_primitive_desc_create(&pd, &desc, attr, grad__dnnl_engine(), NULL) != dnnl_success)
    return NULL;
  return pd;
}

/* libgrad's two Winograd kernels (winograd.h), by data type. */
static const grad__wino_kernel *wino_of(dnnl_data_type_t t) {
  return t == dnnl_bf16 ? &grad__wino_bf16_kernel : &grad__wino_f32_kernel;
}

/* libgrad's Winograd for this convolution: src is in the blocked layout
 * already, and the kernel of its type runs it here. bf16: the CPU's bf16
 * is AVX512_BF16 without AMX (with AMX oneDNN's bf16 tiles outrun any
 * Winograd; docs/backbone.md, "bf16"). fp32: AVX-512, where libgrad's
 * F(4x4, 3x3) measured faster than oneDNN's (docs/backbone.md, "Engines"). */
static bool takes_winograd(const grad__conv *s, int n, int h, int w,
                           const dnnl_memory_desc_t *src, dnnl_data_type_t t) {
  const bool runs = t == dnnl_bf16 ? !grad__dnnl_amx() && grad__wino_bf16_available() &&
                                         grad__wino_bf16_fits(s)
                                   : t == dnnl_f32 && grad__wino_f32_available() &&
                                         grad__wino_f32_fits(s);
  dnnl_memory_desc_t blocked;
  return runs && grad__dnnl_act_tag() == dnnl_nChw16c &&
         grad__dnnl_md4(&blocked, n, s->in_channels, h, w, t, dnnl_nChw16c) == GRAD_OK &&
         dnnl_memory_desc_equal(&blocked, src);
}

/* c as a Winograd kernel: its operands' layouts, the one-dimensional
 * mark of its weights (of the kernel's type), its scratch for the current
 * team's threads. */
static grad_status winograd_make(const grad__conv *s, int n, int h, int w,
                                 const dnnl_memory_desc_t *src, dnnl_data_type_t t, bool sum,
                                 bool relu, grad__dnnl_conv *c, const char *what) {
  const grad__wino_kernel *k = wino_of(t);
  c->winograd = true;
  c->sum = sum;
  c->relu = relu;
  c->n = n;
  c->threads = grad__team_threads();
  c->wino = (grad__wino){s->in_channels, s->out_channels, h, w};
  c->src = *src;
  dnnl_dims_t wei_dims = {(dnnl_dim_t)(k->weight_bytes(&c->wino) / k->element)};
  dnnl_dims_t bias_dims = {s->out_channels};
  dnnl_dims_t scratch_dims = {(dnnl_dim_t)k->scratch_bytes(&c->wino, c->threads)};
  grad_status st = grad__dnnl_md4(&c->dst, n, s->out_channels, h, w, t, dnnl_nChw16c);
  if (st == GRAD_OK)
    st = grad__dnnl_check(dnnl_memory_desc_init_by_tag(&c->wei, 1, wei_dims, t, dnnl_x), what);
  if (st == GRAD_OK)
    st = grad__dnnl_check(dnnl_memory_desc_init_by_tag(&c->bias, 1, bias_dims, dnnl_f32, dnnl_x),
                          what);
  if (st == GRAD_OK)
    st = grad__dnnl_check(
        dnnl_memory_desc_init_by_tag(&c->scratch, 1, scratch_dims, dnnl_u8, dnnl_x), what);
  return st;
}

grad_status grad__dnnl_conv_make(const grad__conv *s, int n, int h, int w,
                                 const dnnl_memory_desc_t *src, dnnl_data_type_t t, bool sum,
                                 bool relu, grad__dnnl_conv *out, const char *what) {
  memset(out, 0, sizeof *out);
  if (takes_winograd(s, n, h, w, src, t))
    return winograd_make(s, n, h, w, src, t, sum, relu, out, what);
  const int oh = grad__conv_out_size(s, h), ow = grad__conv_out_size(s, w);
  dnnl_memory_desc_t wei, bias, dst;
  dnnl_dims_t bias_dims = {s->out_channels};
  grad_status st = grad__dnnl_md4(&wei, s->out_channels, s->in_channels, s->kernel, s->kernel, t,
                                  dnnl_format_tag_any);
  if (st == GRAD_OK) st = grad__dnnl_md4(&dst, n, s->out_channels, oh, ow, t, grad__dnnl_act_tag());
  if (st == GRAD_OK)
    st = grad__dnnl_check(dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x),
                          what);
  if (st != GRAD_OK) return st;
  dnnl_primitive_attr_t attr = make_attr(sum, relu);
  if (!attr) return grad__fail(GRAD_E_NOMEM, "out of memory making %s", what);
  dnnl_primitive_desc_t pd = direct_pd(s, src, &wei, &bias, &dst, attr);
  dnnl_primitive_attr_destroy(attr);
  if (!pd)
    return grad__fail(GRAD_E_UNSUPPORTED, "oneDNN has no convolution for %s on this CPU (%s)",
                      what, grad__dnnl_isa_name());
  st = grad__dnnl_check(dnnl_primitive_create(&out->prim, pd), what);
  if (st == GRAD_OK) {
    out->src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    out->wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    out->bias = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
    out->dst = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    out->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  }
  dnnl_primitive_desc_destroy(pd);
  return st;
}

void grad__dnnl_conv_free(grad__dnnl_conv *c) {
  if (c->prim) dnnl_primitive_destroy(c->prim);
  c->prim = NULL;
}

grad_status grad__dnnl_conv_run(const grad__dnnl_conv *c, dnnl_stream_t s, const void *src,
                                const void *weights, const float *bias, void *dst, void *scratch,
                                const char *what) {
  if (c->winograd) {
    wino_of(c->dst.data_type)
        ->run(&c->wino, c->n, src, weights, bias, dst, c->sum, c->relu, scratch, c->threads);
    return GRAD_OK;
  }
  grad__dnnl_arg args[] = {{DNNL_ARG_SRC, &c->src, src},
                           {DNNL_ARG_WEIGHTS, &c->wei, weights},
                           {DNNL_ARG_BIAS, &c->bias, bias},
                           {DNNL_ARG_DST, &c->dst, dst},
                           {DNNL_ARG_SCRATCHPAD, &c->scratch, scratch}};
  return grad__dnnl_exec(c->prim, s, args, 5, what);
}

grad_status grad__dnnl_weights_lay(const float *oihw, const grad__conv *shape,
                                   const dnnl_memory_desc_t *md, void **out, const char *what) {
  *out = NULL;
  size_t bytes = dnnl_memory_desc_get_size(md);
  void *data = grad__malloc(bytes ? bytes : 1);
  if (!data) return grad__fail(GRAD_E_NOMEM, "out of memory laying out the weights of %s", what);
  if (md->ndims == 1) { /* a Winograd kernel's mark */
    const grad__wino wino = {shape->in_channels, shape->out_channels, 0, 0};
    wino_of(md->data_type)->weights_lay(&wino, oihw, data);
    *out = data;
    return GRAD_OK;
  }
  dnnl_memory_desc_t from;
  dnnl_primitive_t reorder = NULL;
  dnnl_stream_t stream = NULL;
  /* On every thread of the process, whatever team the caller is in (plans
   * are made on one): oneDNN's reorders into Winograd's layout took 0.36 s
   * of loading a resnet18 + C 192 model on one Zen 4 thread, 0.22 s on two. */
  grad__team_scope team = grad__team_enter(grad__threads(NULL));
  grad_status st = grad__dnnl_md4(&from, shape->out_channels, shape->in_channels, shape->kernel,
                                  shape->kernel, dnnl_f32, dnnl_oihw);
  if (st == GRAD_OK) st = grad__dnnl_reorder_make(&from, md, &reorder, what);
  if (st == GRAD_OK)
    st = grad__dnnl_check(
        dnnl_stream_create(&stream, grad__dnnl_engine(), dnnl_stream_default_flags), "a stream");
  if (st == GRAD_OK) {
    grad__dnnl_arg args[] = {{DNNL_ARG_FROM, &from, oihw}, {DNNL_ARG_TO, md, data}};
    st = grad__dnnl_exec(reorder, stream, args, 2, what);
  }
  if (stream) dnnl_stream_destroy(stream);
  if (reorder) dnnl_primitive_destroy(reorder);
  grad__team_leave(team);
  if (st != GRAD_OK) {
    grad__free(data);
    return st;
  }
  *out = data;
  return GRAD_OK;
}

void grad__dnnl_note_bytes(size_t *max, const dnnl_memory_desc_t *md) {
  size_t bytes = dnnl_memory_desc_get_size(md);
  if (bytes > *max) *max = bytes;
}

grad__dnnl_split grad__dnnl_split_of(int n, int threads, int max_workers) {
  if (threads <= 1) return (grad__dnnl_split){n, 1, 0};
  const int workers = threads < max_workers ? threads : max_workers;
  const int pooled = n - n % workers;
  return (grad__dnnl_split){pooled, pooled ? workers : 0, n - pooled};
}

typedef struct items_job {
  grad__dnnl_split split;
  grad__dnnl_item_fn fn;
  void *ctx;
  grad__failure failure; /* the first to arrive */
} items_job;

/* Items [first, end) by step on one stream, primitives of team or not. */
static grad_status run_items(items_job *j, int worker, int first, int end, int step, bool team,
                             int threads) {
  dnnl_stream_t stream = NULL;
  grad_status st = grad__dnnl_check(
      dnnl_stream_create(&stream, grad__dnnl_engine(), dnnl_stream_default_flags), "a stream");
  grad__team_scope scope = grad__team_enter(team ? threads : 1);
  for (int i = first; st == GRAD_OK && i < end; i += step)
    st = j->fn(j->ctx, stream, worker, i, team);
  grad__team_leave(scope);
  if (stream) dnnl_stream_destroy(stream);
  return st;
}

/* Worker `part` takes items part, part + parts, ... (a fixed share: each
 * writes its own outputs). */
static void items_part(void *data, int part, int parts) {
  items_job *j = data;
  grad_status st = run_items(j, part, part, j->split.pooled, parts, false, 1);
  if (st != GRAD_OK) grad__failure_note(&j->failure, 0, st);
}

static grad_status items_pooled(grad__dnnl_split split, grad__dnnl_item_fn fn, void *ctx) {
  items_job job = {.split = split, .fn = fn, .ctx = ctx};
  if (split.workers <= 1) return run_items(&job, 0, 0, split.pooled, 1, false, 1);
  grad__failure_init(&job.failure);
  grad__parallel_threads(split.workers, split.workers, items_part, &job);
  return grad__failure_raise(&job.failure);
}

grad_status grad__dnnl_items_run(grad__dnnl_split split, int threads, grad_workspace *ws,
                                 grad__dnnl_take_fn take, grad__dnnl_item_fn fn, void *ctx) {
  grad_status st = GRAD_OK;
  size_t mark = grad__ws_mark(ws);
  for (int w = 0; st == GRAD_OK && w < split.workers; w++) st = take(ctx, ws, w, false);
  if (st == GRAD_OK && split.pooled) st = items_pooled(split, fn, ctx);
  grad__ws_release(ws, mark);
  if (st == GRAD_OK && split.teamed) { /* after the pool: its buffers serve again */
    st = take(ctx, ws, 0, true);
    items_job job = {.split = split, .fn = fn, .ctx = ctx};
    if (st == GRAD_OK)
      st = run_items(&job, 0, split.pooled, split.pooled + split.teamed, 1, true, threads);
    grad__ws_release(ws, mark);
  }
  return st;
}

#endif /* GRAD_HAVE_ONEDNN */
