/*
 * The backbone on oneDNN's convolution primitives (docs/backbone.md,
 * "Engines"). Activations stay in oneDNN's blocked layout (nChw16c with
 * AVX-512) from the stem to the stage outputs; the folded BatchNorm bias,
 * the residual (a "sum" post-op: the convolution adds into the buffer that
 * holds the identity) and the ReLU are fused into each convolution; max
 * pooling is a oneDNN primitive too. Only the requested stages leave the
 * blocked layout, as fp32 C,N,H,W for the neck.
 *
 * Primitives are made per (batch size, thread count) on first use and kept
 * ("plans"); the weights are reordered into the layout a primitive asks
 * for once, and shared by every plan that asks for the same layout. The
 * plans and weights are guarded by a mutex; a plan is immutable once
 * published, so any number of threads run it at once, each with its own
 * workspace, which holds the activations and oneDNN's scratchpad ("user"
 * scratchpad mode: nothing is allocated per call beyond oneDNN's small
 * memory objects).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backbone_internal.h"
#include "dnnl_engine_internal.h"
#include "threading.h"

#ifdef GRAD_HAVE_ONEDNN

/* A weight tensor in a layout some primitive asked for. */
typedef struct laid_weights {
  const grad__bb_conv *conv;
  dnnl_memory_desc_t md;
  void *data;
  struct laid_weights *next;
} laid_weights;

typedef struct dconv {
  dnnl_primitive_t prim;
  dnnl_memory_desc_t src, wei, bias, dst, scratch;
  const void *weights;
} dconv;

typedef struct dblock {
  dconv conv[3];
  dconv down;
} dblock;

/* Every primitive for n images with `threads` threads. */
typedef struct plan {
  int n, threads;
  dnnl_memory_desc_t image;   /* the caller's n x 3 x S x S fp32 */
  dnnl_primitive_t to_stem;   /* image -> the stem's input layout and type */
  dconv stem;
  dnnl_primitive_t pool;
  dnnl_memory_desc_t pooled;
  dblock *blocks;
  dnnl_primitive_t out[5];    /* stage k's blocked output -> fp32 C,N,H,W */
  dnnl_memory_desc_t out_src[5], out_dst[5];
  size_t act_bytes;           /* largest activation */
  size_t scratch_bytes;       /* largest scratchpad */
  size_t stem_in_bytes, out_bytes;
  struct plan *next;
} plan;

struct grad__bb_dnnl {
  pthread_mutex_t lock;
  grad_precision precision;   /* of the plans and weights below */
  plan *plans;
  laid_weights *weights;
};

static dnnl_data_type_t act_type(const grad_backbone *bb) {
  return bb->precision == GRAD_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;
}

static grad_status md4(dnnl_memory_desc_t *md, int n, int c, int h, int w, dnnl_data_type_t t,
                       dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {n, c, h, w};
  return grad__dnnl_check(dnnl_memory_desc_init_by_tag(md, 4, dims, t, tag), "a memory layout");
}

static dnnl_primitive_attr_t make_attr(bool sum, bool relu) {
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
  if ((sum || relu) && dnnl_post_ops_create(&ops) == dnnl_success) {
    if (sum) dnnl_post_ops_append_sum(ops, 1.0f);
    if (relu) dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    dnnl_primitive_attr_set_post_ops(attr, ops);
    dnnl_post_ops_destroy(ops);
  }
  return attr;
}

static void note(size_t *max, size_t v) {
  if (v > *max) *max = v;
}

/* Makes a primitive from a descriptor (pd kept for queries by the caller
 * through *pd_out, which it must destroy). */
static grad_status make_prim(const void *desc, dnnl_primitive_attr_t attr, plan *p,
                             dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd_out,
                             const char *what) {
  dnnl_primitive_desc_t pd = NULL;
  grad_status st =
      grad__dnnl_check(dnnl_primitive_desc_create(&pd, desc, attr, grad__dnnl_engine(), NULL), what);
  if (st == GRAD_OK) st = grad__dnnl_check(dnnl_primitive_create(prim, pd), what);
  if (st == GRAD_OK)
    note(&p->scratch_bytes,
         dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)));
  if (st == GRAD_OK && pd_out)
    *pd_out = pd;
  else
    dnnl_primitive_desc_destroy(pd);
  return st;
}

static grad_status make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                plan *p, dnnl_primitive_t *prim, const char *what) {
  (void)p; /* reorders keep oneDNN's own scratchpad (they need none here) */
  dnnl_primitive_desc_t pd = NULL;
  grad_status st = grad__dnnl_check(
      dnnl_reorder_primitive_desc_create(&pd, from, grad__dnnl_engine(), to, grad__dnnl_engine(),
                                         NULL),
      what);
  if (st == GRAD_OK) st = grad__dnnl_check(dnnl_primitive_create(prim, pd), what);
  dnnl_primitive_desc_destroy(pd);
  return st;
}

/* Runs a primitive on buffers: args[i] pairs an argument with its layout
 * and pointer. */
typedef struct arg {
  int id;
  const dnnl_memory_desc_t *md;
  const void *data;
} arg;

enum { MAX_ARGS = 6 };

static grad_status run(dnnl_primitive_t prim, dnnl_stream_t stream, const arg *args, int count,
                       const char *what) {
  dnnl_exec_arg_t exec[MAX_ARGS];
  int made = 0;
  grad_status st = GRAD_OK;
  for (; made < count && st == GRAD_OK; made++) {
    exec[made].arg = args[made].id;
    st = grad__dnnl_check(dnnl_memory_create(&exec[made].memory, args[made].md,
                                             grad__dnnl_engine(), (void *)args[made].data),
                          what);
    if (st != GRAD_OK) break;
  }
  if (st == GRAD_OK) st = grad__dnnl_check(dnnl_primitive_execute(prim, stream, count, exec), what);
  for (int i = 0; i < made; i++) dnnl_memory_destroy(exec[i].memory);
  return st;
}

/* The weights of conv in layout md: found among those laid out already, or
 * reordered (and converted to bf16) now. Called with the lock held. */
static grad_status lay_weights(struct grad__bb_dnnl *e, const grad__bb_conv *c,
                               const dnnl_memory_desc_t *md, const void **out) {
  for (laid_weights *l = e->weights; l; l = l->next)
    if (l->conv == c && dnnl_memory_desc_equal(&l->md, md)) {
      *out = l->data;
      return GRAD_OK;
    }
  laid_weights *l = grad__calloc(1, sizeof *l);
  size_t bytes = dnnl_memory_desc_get_size(md);
  if (l) l->data = grad__malloc(bytes ? bytes : 1);
  if (!l || !l->data) {
    if (l) grad__free(l);
    return grad__fail(GRAD_E_NOMEM, "out of memory laying out the weights of %s", c->name);
  }
  l->conv = c;
  l->md = *md;
  dnnl_memory_desc_t from;
  const grad__conv *s = &c->shape;
  grad_status st = md4(&from, s->out_channels, s->in_channels, s->kernel, s->kernel, dnnl_f32,
                       dnnl_oihw);
  dnnl_primitive_t reorder = NULL;
  dnnl_stream_t stream = NULL;
  if (st == GRAD_OK) st = make_reorder(&from, md, NULL, &reorder, c->name);
  if (st == GRAD_OK)
    st = grad__dnnl_check(dnnl_stream_create(&stream, grad__dnnl_engine(),
                                             dnnl_stream_default_flags),
                          "a stream");
  if (st == GRAD_OK) {
    arg args[] = {{DNNL_ARG_FROM, &from, c->weight}, {DNNL_ARG_TO, md, l->data}};
    st = run(reorder, stream, args, 2, c->name);
  }
  if (stream) dnnl_stream_destroy(stream);
  if (reorder) dnnl_primitive_destroy(reorder);
  if (st != GRAD_OK) {
    grad__free(l->data);
    grad__free(l);
    return st;
  }
  l->next = e->weights;
  e->weights = l;
  *out = l->data;
  return GRAD_OK;
}

/*
 * One convolution: src and dst in the given layouts (dst's layout "any"
 * when dst_tag is any: the stem's input decides), weights in the layout
 * oneDNN prefers, fp32 bias; post-ops sum (residual) and ReLU.
 */
static grad_status make_conv(grad_backbone *bb, plan *p, const grad__bb_conv *c, int in_size,
                             const dnnl_memory_desc_t *src, bool sum, bool relu, dconv *out) {
  const grad__conv *s = &c->shape;
  const int o = grad__conv_out_size(s, in_size);
  const dnnl_data_type_t t = act_type(bb);
  dnnl_memory_desc_t wei, bias, dst;
  dnnl_dims_t bias_dims = {s->out_channels};
  grad_status st = md4(&wei, s->out_channels, s->in_channels, s->kernel, s->kernel, t,
                       dnnl_format_tag_any);
  if (st == GRAD_OK) st = md4(&dst, p->n, s->out_channels, o, o, t, grad__dnnl_act_tag());
  if (st == GRAD_OK)
    st = grad__dnnl_check(dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x),
                          c->name);
  if (st != GRAD_OK) return st;
  dnnl_convolution_desc_t desc;
  dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
  /* Convolutions take their scratchpad from the caller's workspace. */
  dnnl_primitive_attr_t attr = make_attr(sum, relu);
  if (attr) dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  dnnl_primitive_desc_t pd = NULL;
  /* fp32 3x3 stride-1 convolutions (most of a ResNet's arithmetic) on
   * Winograd F(4x4, 3x3) where oneDNN has it for this CPU (AVX-512): a
   * quarter of the multiplications, measured 1.4-1.5x faster end to end
   * (docs/backbone.md, "Engines"); else, and for every other shape and for
   * bf16, the direct kernels. */
  bool winograd = s->kernel == 3 && s->stride == 1 && t == dnnl_f32 &&
                  dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference,
                                                     dnnl_convolution_winograd, src, &wei, &bias,
                                                     &dst, strides, pad, pad) == dnnl_success &&
                  dnnl_primitive_desc_create(&pd, &desc, attr, grad__dnnl_engine(), NULL) ==
                      dnnl_success;
  if (pd) dnnl_primitive_desc_destroy(pd); /* only asked whether it exists */
  pd = NULL;
  st = grad__dnnl_check(dnnl_convolution_forward_desc_init(
                            &desc, dnnl_forward_inference,
                            winograd ? dnnl_convolution_winograd : dnnl_convolution_direct, src,
                            &wei, &bias, &dst, strides, pad, pad),
                        c->name);
  if (st == GRAD_OK) st = make_prim(&desc, attr, p, &out->prim, &pd, c->name);
  dnnl_primitive_attr_destroy(attr);
  if (st != GRAD_OK) return st;
  out->src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
  out->wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  out->bias = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
  out->dst = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
  out->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  dnnl_primitive_desc_destroy(pd);
  note(&p->act_bytes, dnnl_memory_desc_get_size(&out->dst));
  return lay_weights(bb->dnnl, c, &out->wei, &out->weights);
}

static void free_plan(plan *p, int blocks) {
  if (!p) return;
  if (p->to_stem) dnnl_primitive_destroy(p->to_stem);
  if (p->stem.prim) dnnl_primitive_destroy(p->stem.prim);
  if (p->pool) dnnl_primitive_destroy(p->pool);
  for (int k = 0; k < 5; k++)
    if (p->out[k]) dnnl_primitive_destroy(p->out[k]);
  for (int b = 0; p->blocks && b < blocks; b++) {
    for (int i = 0; i < 3; i++)
      if (p->blocks[b].conv[i].prim) dnnl_primitive_destroy(p->blocks[b].conv[i].prim);
    if (p->blocks[b].down.prim) dnnl_primitive_destroy(p->blocks[b].down.prim);
  }
  grad__free(p->blocks);
  grad__free(p);
}

static grad_status make_blocks(grad_backbone *bb, plan *p, dnnl_memory_desc_t x, int size) {
  grad_status st = GRAD_OK;
  note(&p->act_bytes, dnnl_memory_desc_get_size(&x));
  for (int b = 0; st == GRAD_OK && b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    dblock *d = &p->blocks[b];
    int tsize = size;
    dnnl_memory_desc_t t = x;
    for (int i = 0; st == GRAD_OK && i < blk->convs; i++) {
      bool last = i == blk->convs - 1;
      st = make_conv(bb, p, &blk->conv[i], tsize, &t, last, true, &d->conv[i]);
      if (st != GRAD_OK) break;
      t = d->conv[i].dst;
      tsize = grad__conv_out_size(&blk->conv[i].shape, tsize);
    }
    if (st == GRAD_OK && blk->downsample) st = make_conv(bb, p, &blk->down, size, &x, false, false, &d->down);
    if (st != GRAD_OK) break;
    /* The sum post-op adds into the identity's buffer: same layout. */
    const dnnl_memory_desc_t *identity = blk->downsample ? &d->down.dst : &x;
    if (!dnnl_memory_desc_equal(identity, &t))
      return grad__fail(GRAD_E_UNSUPPORTED, "oneDNN chose different layouts for the output and "
                                            "the identity of block %d", b);
    x = t;
    size = tsize;
    bool stage_end = b + 1 == bb->block_count || bb->blocks[b + 1].stage != blk->stage;
    if (stage_end && (bb->layers & GRAD_BACKBONE_LAYER(blk->stage))) {
      const int k = blk->stage;
      p->out_src[k] = x;
      st = md4(&p->out_dst[k], p->n, bb->stage_channels[k], size, size, dnnl_f32, dnnl_bacd);
      if (st == GRAD_OK) st = make_reorder(&x, &p->out_dst[k], p, &p->out[k], "a stage output");
      note(&p->out_bytes, dnnl_memory_desc_get_size(&p->out_dst[k]));
    }
  }
  return st;
}

static grad_status make_plan(grad_backbone *bb, int n, int threads, plan **out) {
  plan *p = grad__calloc(1, sizeof *p);
  if (p) p->blocks = grad__calloc((size_t)bb->block_count, sizeof *p->blocks);
  if (!p || !p->blocks) {
    if (p) grad__free(p);
    return grad__fail(GRAD_E_NOMEM, "out of memory planning the backbone");
  }
  p->n = n;
  p->threads = threads;
  const int s = bb->input_size, pooled = bb->stage_size[1];
  const dnnl_data_type_t t = act_type(bb);
  dnnl_memory_desc_t src_any;
  grad_status st = md4(&p->image, n, 3, s, s, dnnl_f32, dnnl_nchw);
  if (st == GRAD_OK) st = md4(&src_any, n, 3, s, s, t, dnnl_format_tag_any);
  if (st == GRAD_OK) st = make_conv(bb, p, &bb->stem, s, &src_any, false, true, &p->stem);
  if (st == GRAD_OK) {
    p->stem_in_bytes = dnnl_memory_desc_get_size(&p->stem.src);
    st = make_reorder(&p->image, &p->stem.src, p, &p->to_stem, "the input images");
  }
  if (st == GRAD_OK) st = md4(&p->pooled, n, 64, pooled, pooled, t, grad__dnnl_act_tag());
  if (st == GRAD_OK) {
    dnnl_pooling_desc_t desc;
    dnnl_dims_t two = {2, 2}, three = {3, 3}, one = {1, 1};
    st = grad__dnnl_check(dnnl_pooling_forward_desc_init(&desc, dnnl_forward_inference,
                                                         dnnl_pooling_max, &p->stem.dst,
                                                         &p->pooled, two, three, one, one),
                          "the stem's max pooling");
    if (st == GRAD_OK) st = make_prim(&desc, NULL, p, &p->pool, NULL, "the stem's max pooling");
  }
  if (st == GRAD_OK) st = make_blocks(bb, p, p->pooled, pooled);
  if (st != GRAD_OK) {
    free_plan(p, bb->block_count);
    return st;
  }
  *out = p;
  return GRAD_OK;
}

/* Frees every plan and laid-out weight set of the cache. */
static void drop_cache(const grad_backbone *bb, struct grad__bb_dnnl *e) {
  for (plan *p = e->plans, *next; p; p = next) {
    next = p->next;
    free_plan(p, bb->block_count);
  }
  for (laid_weights *l = e->weights, *next; l; l = next) {
    next = l->next;
    grad__free(l->data);
    grad__free(l);
  }
  e->plans = NULL;
  e->weights = NULL;
}

/* The plan for (n, threads), made on first use. */
static grad_status find_plan(const grad_backbone *cbb, int n, int threads, const plan **out) {
  grad_backbone *bb = (grad_backbone *)cbb; /* the cache is the only mutable part */
  struct grad__bb_dnnl *e = bb->dnnl;
  pthread_mutex_lock(&e->lock);
  if (e->precision != bb->precision) { /* laid out for another precision: start again */
    drop_cache(bb, e);
    e->precision = bb->precision;
  }
  plan *p = e->plans;
  while (p && (p->n != n || p->threads != threads)) p = p->next;
  grad_status st = GRAD_OK;
  if (!p) {
    grad__team_scope scope = grad__team_enter(threads);
    st = make_plan(bb, n, threads, &p);
    grad__team_leave(scope);
    if (st == GRAD_OK) {
      p->next = e->plans;
      e->plans = p;
    }
  }
  pthread_mutex_unlock(&e->lock);
  *out = p;
  return st;
}

grad_status grad__bb_dnnl_create(grad_backbone *bb) {
  bb->dnnl = grad__calloc(1, sizeof *bb->dnnl);
  if (!bb->dnnl) return grad__fail(GRAD_E_NOMEM, "out of memory creating a backbone");
  pthread_mutex_init(&bb->dnnl->lock, NULL);
  bb->dnnl->precision = bb->precision;
  return GRAD_OK;
}

void grad__bb_dnnl_free(grad_backbone *bb) {
  struct grad__bb_dnnl *e = bb->dnnl;
  if (!e) return;
  bb->precision = (grad_precision)-1; /* find_plan's reset, without a new plan */
  drop_cache(bb, e);
  pthread_mutex_destroy(&e->lock);
  grad__free(e);
  bb->dnnl = NULL;
}

static size_t arena(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/*
 * How a call on n images with `threads` threads runs. Whole groups of
 * `threads` images are shared out over the workers of our sleeping pool
 * (lib/common/threading.c), each running whole single-image forwards on
 * single-threaded primitives: nothing synchronises between layers and no
 * OpenMP thread spins, which matters on shared cores (docs/guide.md,
 * "Threads"). The images left over (all of them for one image) run one at a
 * time on primitives that use oneDNN's OpenMP team of `threads`, so one
 * image still gets every thread (its latency), at the price of the team's
 * spin between layers while it runs.
 */
typedef struct layout {
  int pooled;   /* images shared out over the pool, one per worker */
  int workers;  /* the pool's workers (buffer sets of the one-thread plan) */
  int teamed;   /* images left for the team plan */
} layout;

static layout layout_of(int n, int threads) {
  if (threads <= 1) return (layout){n, 1, 0};
  const int workers = threads < GRAD__BB_GROUP_MAX ? threads : GRAD__BB_GROUP_MAX;
  const int pooled = n - n % workers;
  return (layout){pooled, pooled ? workers : 0, n - pooled};
}

static size_t bytes_of(const plan *p) {
  return 4 * arena(p->act_bytes) + arena(p->stem_in_bytes) + arena(p->out_bytes) +
         arena(p->scratch_bytes);
}

/* The two plans of calls with `threads` threads (the same one for a single
 * thread), both made on the first call whatever its batch, so that a later
 * call of another batch size makes nothing new. */
static grad_status plans_for(const grad_backbone *bb, int threads, const plan **single,
                             const plan **team) {
  grad_status st = find_plan(bb, 1, 1, single);
  if (st == GRAD_OK) st = find_plan(bb, 1, threads > 1 ? threads : 1, team);
  return st;
}

size_t grad__bb_dnnl_bytes(const grad_backbone *bb, int n, int threads, grad_status *st) {
  const layout l = layout_of(n, threads);
  const plan *single = NULL, *team = NULL;
  *st = plans_for(bb, threads, &single, &team);
  if (*st != GRAD_OK) return 0;
  /* the pooled part and the team part run one after the other */
  const size_t pooled = (size_t)l.workers * bytes_of(single);
  const size_t teamed = l.teamed ? bytes_of(team) : 0;
  return pooled > teamed ? pooled : teamed;
}

typedef struct buffers {
  void *act[4];
  void *scratch, *stem_in, *out;
} buffers;

static grad_status take(grad_workspace *ws, const plan *p, buffers *b) {
  memset(b, 0, sizeof *b);
  for (int i = 0; i < 4; i++)
    if (!(b->act[i] = grad__ws_alloc(ws, p->act_bytes))) return GRAD_E_NOMEM;
  if (!(b->stem_in = grad__ws_alloc(ws, p->stem_in_bytes))) return GRAD_E_NOMEM;
  if (p->scratch_bytes && !(b->scratch = grad__ws_alloc(ws, p->scratch_bytes))) return GRAD_E_NOMEM;
  if (p->out_bytes && !(b->out = grad__ws_alloc(ws, p->out_bytes))) return GRAD_E_NOMEM;
  return GRAD_OK;
}

static grad_status run_conv(const grad__bb_conv *c, const dconv *d, dnnl_stream_t s,
                            const void *src, void *dst, void *scratch) {
  arg args[] = {{DNNL_ARG_SRC, &d->src, src},
                {DNNL_ARG_WEIGHTS, &d->wei, d->weights},
                {DNNL_ARG_BIAS, &d->bias, c->bias},
                {DNNL_ARG_DST, &d->dst, dst},
                {DNNL_ARG_SCRATCHPAD, &d->scratch, scratch}};
  return run(d->prim, s, args, 5, c->name);
}

/* One image (index `image` of the call) through the network; every
 * requested stage goes to sink. */
static grad_status run_image(const grad_backbone *bb, const plan *p, dnnl_stream_t s,
                             const buffers *buf, const float *pixels, int image,
                             grad__bb_sink sink, void *ctx) {
  arg in[] = {{DNNL_ARG_FROM, &p->image, pixels}, {DNNL_ARG_TO, &p->stem.src, buf->stem_in}};
  grad_status st = run(p->to_stem, s, in, 2, "the input images");
  if (st == GRAD_OK) st = run_conv(&bb->stem, &p->stem, s, buf->stem_in, buf->act[1], buf->scratch);
  if (st == GRAD_OK) {
    arg pool[] = {{DNNL_ARG_SRC, &p->stem.dst, buf->act[1]}, {DNNL_ARG_DST, &p->pooled, buf->act[0]}};
    st = run(p->pool, s, pool, 2, "the stem's max pooling");
  }
  void *x = buf->act[0];
  for (int b = 0; st == GRAD_OK && b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    const dblock *d = &p->blocks[b];
    void *spare[3];
    for (int i = 0, j = 0; i < 4; i++)
      if (buf->act[i] != x) spare[j++] = buf->act[i];
    void *t = x;
    for (int i = 0; st == GRAD_OK && i < blk->convs - 1; i++) {
      st = run_conv(&blk->conv[i], &d->conv[i], s, t, spare[i], buf->scratch);
      t = spare[i];
    }
    /* The last convolution adds into the identity: the downsample's output,
     * or the block's input itself (read by nothing after). */
    void *y = x;
    if (st == GRAD_OK && blk->downsample) {
      st = run_conv(&blk->down, &d->down, s, x, spare[2], buf->scratch);
      y = spare[2];
    }
    if (st == GRAD_OK)
      st = run_conv(&blk->conv[blk->convs - 1], &d->conv[blk->convs - 1], s, t, y, buf->scratch);
    x = y;
    bool stage_end = b + 1 == bb->block_count || bb->blocks[b + 1].stage != blk->stage;
    const int k = blk->stage;
    if (st == GRAD_OK && stage_end && (bb->layers & GRAD_BACKBONE_LAYER(k))) {
      arg args[] = {{DNNL_ARG_FROM, &p->out_src[k], x}, {DNNL_ARG_TO, &p->out_dst[k], buf->out}};
      st = run(p->out[k], s, args, 2, "a stage output");
      if (st == GRAD_OK)
        sink(ctx, k, buf->out, 1, image, bb->stage_channels[k], (int)p->out_dst[k].dims[2]);
    }
  }
  return st;
}

/* Images [first, first + count) by `step`, on the calling thread. */
static grad_status run_images(const grad_backbone *bb, const plan *p, const buffers *buf,
                              const float *images, int first, int count, int step,
                              grad__bb_sink sink, void *ctx) {
  dnnl_stream_t stream = NULL;
  grad_status st = grad__dnnl_check(
      dnnl_stream_create(&stream, grad__dnnl_engine(), dnnl_stream_default_flags), "a stream");
  grad__team_scope scope = grad__team_enter(p->threads);
  const size_t image_floats = (size_t)3 * bb->input_size * bb->input_size;
  for (int i = first; st == GRAD_OK && i < count; i += step)
    st = run_image(bb, p, stream, buf, images + (size_t)i * image_floats, i, sink, ctx);
  grad__team_leave(scope);
  if (stream) dnnl_stream_destroy(stream);
  return st;
}

/* The images shared out over the pool's workers: worker w takes images
 * w, w + workers, ... (a fixed share: each writes its own outputs). */
typedef struct image_job {
  const grad_backbone *bb;
  const plan *p;
  const buffers *buf;
  const float *images;
  int n;
  grad__bb_sink sink;
  void *ctx;
  pthread_mutex_t lock;
  grad_status status;
  char message[512];
} image_job;

static void image_part(void *data, int part, int parts) {
  image_job *j = data;
  grad_status st = run_images(j->bb, j->p, &j->buf[part], j->images, part, j->n, parts, j->sink,
                              j->ctx);
  if (st != GRAD_OK) { /* the message is this worker's: hand it to the caller */
    pthread_mutex_lock(&j->lock);
    if (j->status == GRAD_OK) {
      j->status = st;
      snprintf(j->message, sizeof j->message, "%s", grad_last_error());
    }
    pthread_mutex_unlock(&j->lock);
  }
}

grad_status grad__bb_dnnl_run(const grad_backbone *bb, grad_workspace *ws, const float *images,
                              int n, grad__bb_sink sink, void *ctx) {
  const int threads = grad__threads(ws);
  const layout l = layout_of(n, threads);
  const plan *single = NULL, *team = NULL;
  grad_status st = plans_for(bb, threads, &single, &team);
  if (st != GRAD_OK) return st;
  size_t mark = grad__ws_mark(ws);
  buffers buf[GRAD__BB_GROUP_MAX];
  for (int w = 0; st == GRAD_OK && w < l.workers; w++) st = take(ws, single, &buf[w]);
  if (st == GRAD_OK && l.workers == 1) {
    st = run_images(bb, single, &buf[0], images, 0, l.pooled, 1, sink, ctx);
  } else if (st == GRAD_OK && l.workers > 1) {
    image_job job = {bb,   single, buf,     images, l.pooled,
                     sink, ctx,    PTHREAD_MUTEX_INITIALIZER, GRAD_OK, ""};
    grad__parallel_threads(l.workers, l.workers, image_part, &job);
    pthread_mutex_destroy(&job.lock);
    if (job.status != GRAD_OK) st = grad__fail(job.status, "%s", job.message);
  }
  grad__ws_release(ws, mark);
  if (st == GRAD_OK && l.teamed) {
    st = take(ws, team, &buf[0]);
    if (st == GRAD_OK) st = run_images(bb, team, &buf[0], images, l.pooled, n, 1, sink, ctx);
    grad__ws_release(ws, mark);
  }
  return st;
}

#else /* no oneDNN */

grad_status grad__bb_dnnl_create(grad_backbone *bb) {
  bb->dnnl = NULL;
  return GRAD_OK;
}
void grad__bb_dnnl_free(grad_backbone *bb) { (void)bb; }
size_t grad__bb_dnnl_bytes(const grad_backbone *bb, int n, int threads, grad_status *st) {
  (void)bb, (void)n, (void)threads;
  *st = grad__fail(GRAD_E_UNSUPPORTED, "libgrad was built without oneDNN");
  return 0;
}
grad_status grad__bb_dnnl_run(const grad_backbone *bb, grad_workspace *ws, const float *images,
                              int n, grad__bb_sink sink, void *ctx) {
  (void)bb, (void)ws, (void)images, (void)n, (void)sink, (void)ctx;
  return grad__fail(GRAD_E_UNSUPPORTED, "libgrad was built without oneDNN");
}

#endif
