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
#include <string.h>

#include "backbone_internal.h"
#include "dnnl_infer.h"
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
  grad__dnnl_conv conv;
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
  dnnl_primitive_t to_stem;   /* image -> the stem's input layout and type (NULL: the same) */
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

static void note(size_t *max, size_t v) {
  if (v > *max) *max = v;
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
  if (!l) return grad__fail(GRAD_E_NOMEM, "out of memory laying out the weights of %s", c->name);
  grad_status st = grad__dnnl_weights_lay(c->weight, &c->shape, md, &l->data, c->name);
  if (st != GRAD_OK) {
    grad__free(l);
    return st;
  }
  l->conv = c;
  l->md = *md;
  l->next = e->weights;
  e->weights = l;
  *out = l->data;
  return GRAD_OK;
}

/* One convolution with its post-ops (sum: the residual; ReLU), its weights
 * laid out for it. */
static grad_status make_conv(grad_backbone *bb, plan *p, const grad__bb_conv *c, int in_size,
                             const dnnl_memory_desc_t *src, bool sum, bool relu, dconv *out) {
  grad_status st = grad__dnnl_conv_make(&c->shape, p->n, in_size, in_size, src, act_type(bb), sum,
                                        relu, &out->conv, c->name);
  if (st != GRAD_OK) return st;
  grad__dnnl_note_bytes(&p->scratch_bytes, &out->conv.scratch);
  grad__dnnl_note_bytes(&p->act_bytes, &out->conv.dst);
  return lay_weights(bb->dnnl, c, &out->conv.wei, &out->weights);
}

static void free_plan(plan *p, int blocks) {
  if (!p) return;
  if (p->to_stem) dnnl_primitive_destroy(p->to_stem);
  grad__dnnl_conv_free(&p->stem.conv);
  if (p->pool) dnnl_primitive_destroy(p->pool);
  for (int k = 0; k < 5; k++)
    if (p->out[k]) dnnl_primitive_destroy(p->out[k]);
  for (int b = 0; p->blocks && b < blocks; b++) {
    for (int i = 0; i < 3; i++) grad__dnnl_conv_free(&p->blocks[b].conv[i].conv);
    grad__dnnl_conv_free(&p->blocks[b].down.conv);
  }
  grad__free(p->blocks);
  grad__free(p);
}

static grad_status make_blocks(grad_backbone *bb, plan *p, dnnl_memory_desc_t x, int size) {
  grad_status st = GRAD_OK;
  grad__dnnl_note_bytes(&p->act_bytes, &x);
  for (int b = 0; st == GRAD_OK && b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    dblock *d = &p->blocks[b];
    int tsize = size;
    dnnl_memory_desc_t t = x;
    for (int i = 0; st == GRAD_OK && i < blk->convs; i++) {
      bool last = i == blk->convs - 1;
      st = make_conv(bb, p, &blk->conv[i], tsize, &t, last, true, &d->conv[i]);
      if (st != GRAD_OK) break;
      t = d->conv[i].conv.dst;
      tsize = grad__conv_out_size(&blk->conv[i].shape, tsize);
    }
    if (st == GRAD_OK && blk->downsample)
      st = make_conv(bb, p, &blk->down, size, &x, false, false, &d->down);
    if (st != GRAD_OK) break;
    /* The sum post-op adds into the identity's buffer: same layout. */
    const dnnl_memory_desc_t *identity = blk->downsample ? &d->down.conv.dst : &x;
    if (!dnnl_memory_desc_equal(identity, &t))
      return grad__fail(GRAD_E_UNSUPPORTED, "oneDNN chose different layouts for the output and "
                                            "the identity of block %d", b);
    x = t;
    size = tsize;
    bool stage_end = b + 1 == bb->block_count || bb->blocks[b + 1].stage != blk->stage;
    if (stage_end && (bb->layers & GRAD_BACKBONE_LAYER(blk->stage))) {
      const int k = blk->stage;
      p->out_src[k] = x;
      st = grad__dnnl_md4(&p->out_dst[k], p->n, bb->stage_channels[k], size, size, dnnl_f32,
                          dnnl_bacd);
      if (st == GRAD_OK) st = grad__dnnl_reorder_make(&x, &p->out_dst[k], &p->out[k], "a stage output");
      note(&p->out_bytes, dnnl_memory_desc_get_size(&p->out_dst[k]));
    }
  }
  return st;
}

static grad_status make_pool(plan *p) {
  dnnl_pooling_desc_t desc;
  dnnl_dims_t two = {2, 2}, three = {3, 3}, one = {1, 1};
  const char *what = "the stem's max pooling";
  grad_status st = grad__dnnl_check(
      dnnl_pooling_forward_desc_init(&desc, dnnl_forward_inference, dnnl_pooling_max,
                                     &p->stem.conv.dst, &p->pooled, two, three, one, one),
      what);
  dnnl_primitive_desc_t pd = NULL;
  if (st == GRAD_OK)
    st = grad__dnnl_check(dnnl_primitive_desc_create(&pd, &desc, NULL, grad__dnnl_engine(), NULL),
                          what);
  if (st == GRAD_OK) st = grad__dnnl_check(dnnl_primitive_create(&p->pool, pd), what);
  if (pd) dnnl_primitive_desc_destroy(pd);
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
  grad_status st = grad__dnnl_md4(&p->image, n, 3, s, s, dnnl_f32, dnnl_nchw);
  if (st == GRAD_OK) st = grad__dnnl_md4(&src_any, n, 3, s, s, t, dnnl_format_tag_any);
  if (st == GRAD_OK) st = make_conv(bb, p, &bb->stem, s, &src_any, false, true, &p->stem);
  /* fp32 stems read the images as they are (oneDNN's stem kernels take
   * plain NCHW); a reorder there was a copy of every image. */
  if (st == GRAD_OK && !dnnl_memory_desc_equal(&p->image, &p->stem.conv.src)) {
    p->stem_in_bytes = dnnl_memory_desc_get_size(&p->stem.conv.src);
    st = grad__dnnl_reorder_make(&p->image, &p->stem.conv.src, &p->to_stem, "the input images");
  }
  if (st == GRAD_OK)
    st = grad__dnnl_md4(&p->pooled, n, 64, pooled, pooled, t, grad__dnnl_act_tag());
  if (st == GRAD_OK) st = make_pool(p);
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

size_t grad__bb_dnnl_weight_bytes(const grad_backbone *bb) {
  struct grad__bb_dnnl *e = bb->dnnl;
  if (!e) return 0;
  size_t bytes = 0;
  pthread_mutex_lock(&e->lock);
  for (const laid_weights *l = e->weights; l; l = l->next) bytes += dnnl_memory_desc_get_size(&l->md);
  pthread_mutex_unlock(&e->lock);
  return bytes;
}

static size_t bytes_of(const plan *p) {
  return 4 * grad__ws_round(p->act_bytes) + grad__ws_round(p->stem_in_bytes) +
         grad__ws_round(p->out_bytes) + grad__ws_round(p->scratch_bytes);
}

/* The one-thread plan (images shared out over the pool) and the team plan
 * (images left over) of calls with `threads` threads (the same plan for one
 * thread), both made on the first call whatever its batch, so that a later
 * call of another batch size makes nothing new (docs/backbone.md). */
static grad_status plans_for(const grad_backbone *bb, int threads, const plan **single,
                             const plan **team) {
  grad_status st = find_plan(bb, 1, 1, single);
  if (st == GRAD_OK) st = find_plan(bb, 1, threads > 1 ? threads : 1, team);
  return st;
}

size_t grad__bb_dnnl_bytes(const grad_backbone *bb, int n, int threads, grad_status *st) {
  const grad__dnnl_split split = grad__dnnl_split_of(n, threads, GRAD__BB_GROUP_MAX);
  const plan *single = NULL, *team = NULL;
  *st = plans_for(bb, threads, &single, &team);
  if (*st != GRAD_OK) return 0;
  /* the pooled part and the team part run one after the other */
  const size_t pooled = (size_t)split.workers * bytes_of(single);
  const size_t teamed = split.teamed ? bytes_of(team) : 0;
  return pooled > teamed ? pooled : teamed;
}

typedef struct buffers {
  void *act[4];
  void *scratch, *stem_in, *out;
} buffers;

static grad_status take_set(grad_workspace *ws, const plan *p, buffers *b) {
  memset(b, 0, sizeof *b);
  bool ok = true;
  for (int i = 0; i < 4; i++) ok = ok && (b->act[i] = grad__ws_alloc(ws, p->act_bytes));
  ok = ok && (!p->stem_in_bytes || (b->stem_in = grad__ws_alloc(ws, p->stem_in_bytes)));
  ok = ok && (!p->scratch_bytes || (b->scratch = grad__ws_alloc(ws, p->scratch_bytes)));
  ok = ok && (!p->out_bytes || (b->out = grad__ws_alloc(ws, p->out_bytes)));
  return ok ? GRAD_OK : grad__fail(GRAD_E_NOMEM, "out of workspace memory in the backbone");
}

static grad_status run_conv(const grad__bb_conv *c, const dconv *d, dnnl_stream_t s,
                            const void *src, void *dst, void *scratch) {
  return grad__dnnl_conv_run(&d->conv, s, src, d->weights, c->bias, dst, scratch, c->name);
}

/* One image (index `image` of the call) through the network; every
 * requested stage goes to sink. */
static grad_status run_image(const grad_backbone *bb, const plan *p, dnnl_stream_t s,
                             const buffers *buf, const float *pixels, int image,
                             grad__bb_sink sink, void *ctx) {
  const void *stem_in = p->to_stem ? buf->stem_in : pixels;
  grad_status st = GRAD_OK;
  if (p->to_stem) {
    grad__dnnl_arg in[] = {{DNNL_ARG_FROM, &p->image, pixels},
                           {DNNL_ARG_TO, &p->stem.conv.src, buf->stem_in}};
    st = grad__dnnl_exec(p->to_stem, s, in, 2, "the input images");
  }
  if (st == GRAD_OK) st = run_conv(&bb->stem, &p->stem, s, stem_in, buf->act[1], buf->scratch);
  if (st == GRAD_OK) {
    grad__dnnl_arg pool[] = {{DNNL_ARG_SRC, &p->stem.conv.dst, buf->act[1]},
                             {DNNL_ARG_DST, &p->pooled, buf->act[0]}};
    st = grad__dnnl_exec(p->pool, s, pool, 2, "the stem's max pooling");
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
      grad__dnnl_arg args[] = {{DNNL_ARG_FROM, &p->out_src[k], x},
                               {DNNL_ARG_TO, &p->out_dst[k], buf->out}};
      st = grad__dnnl_exec(p->out[k], s, args, 2, "a stage output");
      if (st == GRAD_OK)
        sink(ctx, k, buf->out, 1, image, bb->stage_channels[k], (int)p->out_dst[k].dims[2]);
    }
  }
  return st;
}

/* A call's images, plans and buffer sets (one per pool worker, or the
 * team's in [0]). */
typedef struct call {
  const grad_backbone *bb;
  const plan *single, *team;
  buffers buf[GRAD__BB_GROUP_MAX];
  const float *images;
  grad__bb_sink sink;
  void *ctx;
} call;

static grad_status take(void *data, grad_workspace *ws, int worker, bool team) {
  call *c = data;
  return take_set(ws, team ? c->team : c->single, &c->buf[worker]);
}

static grad_status image_item(void *data, dnnl_stream_t s, int worker, int image, bool team) {
  const call *c = data;
  const size_t image_floats = (size_t)3 * c->bb->input_size * c->bb->input_size;
  return run_image(c->bb, team ? c->team : c->single, s, &c->buf[worker],
                   c->images + (size_t)image * image_floats, image, c->sink, c->ctx);
}

grad_status grad__bb_dnnl_run(const grad_backbone *bb, grad_workspace *ws, const float *images,
                              int n, grad__bb_sink sink, void *ctx) {
  const int threads = grad__threads(ws);
  call c = {.bb = bb, .images = images, .sink = sink, .ctx = ctx};
  grad_status st = plans_for(bb, threads, &c.single, &c.team);
  if (st != GRAD_OK) return st;
  return grad__dnnl_items_run(grad__dnnl_split_of(n, threads, GRAD__BB_GROUP_MAX), threads, ws,
                              take, image_item, &c);
}

#else /* no oneDNN */

grad_status grad__bb_dnnl_create(grad_backbone *bb) {
  bb->dnnl = NULL;
  return GRAD_OK;
}
void grad__bb_dnnl_free(grad_backbone *bb) { (void)bb; }
size_t grad__bb_dnnl_weight_bytes(const grad_backbone *bb) {
  (void)bb;
  return 0;
}
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
