/*
 * The BasicBlock decoder at scoring time on oneDNN (store_impl.h,
 * grad__store_decode_dnnl). With C = 192 the decoder's 3x3 convolutions
 * cost three times the resnet18 backbone, so they take the backbone's
 * engine (lib/kernels/dnnl_infer.h): each BatchNorm folded into its
 * convolution's weights and bias, the ReLU and the residual as post-ops,
 * Winograd for the 3x3 convolutions where the CPU has it, the map in
 * oneDNN's blocked layout from the first block to the output convolution.
 *
 * All blocks share one shape, so a plan is three primitives (conv1 with
 * ReLU, conv2 with sum and ReLU, the 1x1 output) and two reorders, for one
 * map on one thread or on the OpenMP team, in fp32 or (the model's bf16
 * mode) bf16 with fp32 accumulation and bias. The folded weights are made from
 * the store's values on first use and remade when the store's generation
 * moves on (training steps call grad__store_touch).
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "batchnorm.h"
#include "store_impl.h"

#ifdef GRAD_HAVE_ONEDNN
#include "dnnl_infer.h"

enum { CONV1, CONV2, OUT, KINDS };

typedef struct plan {
  int threads;
  dnnl_memory_desc_t plain_in, plain_out;  /* the caller's 1 x 2C x h x w and 1 x C x h x w */
  dnnl_primitive_t to_blocked, to_plain;
  grad__dnnl_conv conv[KINDS];
  void *const *weights[KINDS];  /* per kind, per block: laid out for conv[kind] (the cache's) */
  size_t act_bytes, scratch_bytes;
  struct plan *next;
} plan;

/* The store's weights in the layout of one primitive kind: per block for
 * CONV1 and CONV2, one for OUT. */
typedef struct laid {
  int kind;
  dnnl_memory_desc_t md;
  void **data;  /* blocks pointers (1 for OUT) */
  struct laid *next;
} laid;

struct grad__store_dnnl {
  pthread_mutex_t lock;
  unsigned long generation;  /* of the store's values the cache below holds */
  grad_precision precision;  /* of the plans and laid-out weights */
  float *folded;             /* while laying out: per block conv1 and conv2, BatchNorm folded in */
  float *bias;               /* per block: conv1's and conv2's biases; then C zeros */
  plan *plans;
  laid *laid;
};

static size_t plane_of(const grad_store *s) { return (size_t)s->config.height * s->config.width; }
static size_t conv_floats(const grad_store *s) {
  const size_t C2 = 2 * (size_t)s->config.channels;
  return C2 * C2 * 9;
}

static void free_plan(plan *p) {
  if (p->to_blocked) dnnl_primitive_destroy(p->to_blocked);
  if (p->to_plain) dnnl_primitive_destroy(p->to_plain);
  for (int k = 0; k < KINDS; k++) grad__dnnl_conv_free(&p->conv[k]);
  grad__free(p);
}

static void drop_cache(const grad_store *s, struct grad__store_dnnl *e) {
  for (plan *p = e->plans, *next; p; p = next) {
    next = p->next;
    free_plan(p);
  }
  for (laid *l = e->laid, *next; l; l = next) {
    next = l->next;
    for (int b = 0; l->data && b < (l->kind == OUT ? 1 : s->config.blocks); b++)
      grad__free(l->data[b]);
    grad__free(l->data);
    grad__free(l);
  }
  grad__free(e->folded);
  grad__free(e->bias);
  e->plans = NULL;
  e->laid = NULL;
  e->folded = e->bias = NULL;
}

grad_status grad__store_dnnl_create(grad_store *s) {
  s->infer = grad__calloc(1, sizeof *s->infer);
  if (!s->infer) return grad__fail(GRAD_E_NOMEM, "out of memory creating the store");
  pthread_mutex_init(&s->infer->lock, NULL);
  return GRAD_OK;
}

void grad__store_dnnl_free(grad_store *s) {
  if (!s->infer) return;
  drop_cache(s, s->infer);
  pthread_mutex_destroy(&s->infer->lock);
  grad__free(s->infer);
  s->infer = NULL;
}

size_t grad__store_engine_bytes(const grad_store *s) {
  struct grad__store_dnnl *e = s->infer;
  if (!e) return 0;
  pthread_mutex_lock(&e->lock);
  size_t bytes = 0;
  if (e->bias)
    bytes += ((size_t)s->config.blocks * 4 * s->config.channels + (size_t)s->config.channels) *
             sizeof(float);
  for (const laid *l = e->laid; l; l = l->next)
    bytes += (size_t)(l->kind == OUT ? 1 : s->config.blocks) * dnnl_memory_desc_get_size(&l->md);
  pthread_mutex_unlock(&e->lock);
  return bytes;
}

/* W' = W * g / sqrt(var + eps) per output channel, b' = beta - mean * that:
 * the BatchNorm at inference (grad__bn_forward_eval) moved into the
 * convolution before it. */
static void fold(const float *w, const float *gamma, const float *beta, const float *mean,
                 const float *var, int cout, size_t per_out, float *w_out, float *b_out) {
  for (int o = 0; o < cout; o++) {
    const float scale = gamma[o] / sqrtf(var[o] + (float)GRAD__BN_EPS);
    for (size_t i = 0; i < per_out; i++) w_out[o * per_out + i] = w[o * per_out + i] * scale;
    if (b_out) b_out[o] = beta[o] - mean[o] * scale;
  }
}

/* The folded weights and biases (the weights only until laid out: find_plan
 * frees them once a plan has its layouts). */
static grad_status fold_all(const grad_store *s, struct grad__store_dnnl *e) {
  const int C2 = 2 * s->config.channels, blocks = s->config.blocks;
  if (!e->folded) e->folded = grad__malloc((size_t)blocks * 2 * conv_floats(s) * sizeof(float));
  /* Biases already made stay untouched: other threads may be reading them. */
  const bool new_bias = !e->bias;
  if (new_bias)
    e->bias = grad__calloc((size_t)blocks * 2 * C2 + (size_t)s->config.channels, sizeof(float));
  if (!e->folded || !e->bias) return grad__fail(GRAD_E_NOMEM, "out of memory folding the decoder");
  for (int b = 0; b < blocks; b++) {
    float *w = e->folded + (size_t)b * 2 * conv_floats(s);
    float *bias = new_bias ? e->bias + (size_t)b * 2 * C2 : NULL;
    fold(store__bw(s, b, BLOCK_CONV1), store__bw(s, b, BLOCK_BN1_W), store__bw(s, b, BLOCK_BN1_B),
         store__b(s, b, BLOCK_BN1_MEAN), store__b(s, b, BLOCK_BN1_VAR), C2, (size_t)C2 * 9, w,
         bias);
    fold(store__bw(s, b, BLOCK_CONV2), store__bw(s, b, BLOCK_BN2_W), store__bw(s, b, BLOCK_BN2_B),
         store__b(s, b, BLOCK_BN2_MEAN), store__b(s, b, BLOCK_BN2_VAR), C2, (size_t)C2 * 9,
         w + conv_floats(s), bias ? bias + C2 : NULL);
  }
  return GRAD_OK;
}

static grad__conv shape_of(const grad_store *s, int kind) {
  const int C = s->config.channels, C2 = 2 * C;
  return kind == OUT ? (grad__conv){C2, C, 1, 1, 0} : (grad__conv){C2, C2, 3, 1, 1};
}

/* The weights of `kind` in layout md, laid out now if no plan asked for
 * that layout before. Called with the lock held. */
static grad_status lay(const grad_store *s, struct grad__store_dnnl *e, int kind,
                       const dnnl_memory_desc_t *md, void *const **out) {
  for (laid *l = e->laid; l; l = l->next)
    if (l->kind == kind && dnnl_memory_desc_equal(&l->md, md)) {
      *out = l->data;
      return GRAD_OK;
    }
  const int count = kind == OUT ? 1 : s->config.blocks;
  if (kind != OUT && !e->folded) {
    grad_status st = fold_all(s, e);
    if (st != GRAD_OK) return st;
  }
  laid *l = grad__calloc(1, sizeof *l);
  if (l) l->data = grad__calloc((size_t)count, sizeof *l->data);
  if (!l || !l->data) {
    grad__free(l);
    return grad__fail(GRAD_E_NOMEM, "out of memory laying out the decoder");
  }
  l->kind = kind;
  l->md = *md;
  l->next = e->laid;
  e->laid = l; /* freed with the cache, whole or in part */
  const grad__conv shape = shape_of(s, kind);
  for (int b = 0; b < count; b++) {
    const float *w = kind == OUT ? store__w(s, store__out(s))
                                 : e->folded + ((size_t)b * 2 + (kind == CONV2)) * conv_floats(s);
    grad_status st = grad__dnnl_weights_lay(w, &shape, md, &l->data[b], "the decoder");
    if (st != GRAD_OK) return st;
  }
  *out = l->data;
  return GRAD_OK;
}

static grad_status make_plan(const grad_store *s, struct grad__store_dnnl *e, int threads,
                             plan **out) {
  const int C = s->config.channels, C2 = 2 * C, h = s->config.height, w = s->config.width;
  plan *p = grad__calloc(1, sizeof *p);
  if (!p) return grad__fail(GRAD_E_NOMEM, "out of memory planning the decoder");
  p->threads = threads;
  const dnnl_data_type_t t = s->precision == GRAD_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;
  dnnl_memory_desc_t blocked;
  grad_status st = grad__dnnl_md4(&p->plain_in, 1, C2, h, w, dnnl_f32, dnnl_nchw);
  if (st == GRAD_OK) st = grad__dnnl_md4(&p->plain_out, 1, C, h, w, dnnl_f32, dnnl_nchw);
  if (st == GRAD_OK) st = grad__dnnl_md4(&blocked, 1, C2, h, w, t, grad__dnnl_act_tag());
  const bool sum[KINDS] = {false, true, false}, relu[KINDS] = {true, true, false};
  for (int k = 0; k < KINDS && st == GRAD_OK; k++) {
    const grad__conv shape = shape_of(s, k);
    st = grad__dnnl_conv_make(&shape, 1, h, w, &blocked, t, sum[k], relu[k], &p->conv[k],
                              "the decoder");
    if (st != GRAD_OK) break;
    grad__dnnl_note_bytes(&p->scratch_bytes, &p->conv[k].scratch);
    grad__dnnl_note_bytes(&p->act_bytes, &p->conv[k].src);
    grad__dnnl_note_bytes(&p->act_bytes, &p->conv[k].dst);
    st = lay(s, e, k, &p->conv[k].wei, &p->weights[k]);
  }
  /* conv2 adds into the block input's buffer: the same layout throughout. */
  if (st == GRAD_OK && (!dnnl_memory_desc_equal(&p->conv[CONV1].src, &blocked) ||
                        !dnnl_memory_desc_equal(&p->conv[CONV2].dst, &blocked) ||
                        !dnnl_memory_desc_equal(&p->conv[OUT].src, &blocked)))
    st = grad__fail(GRAD_E_UNSUPPORTED, "oneDNN chose another layout inside the decoder");
  if (st == GRAD_OK)
    st = grad__dnnl_reorder_make(&p->plain_in, &blocked, &p->to_blocked, "the decoder's input");
  if (st == GRAD_OK)
    st = grad__dnnl_reorder_make(&p->conv[OUT].dst, &p->plain_out, &p->to_plain,
                                 "the decoder's output");
  if (st != GRAD_OK) {
    free_plan(p);
    return st;
  }
  *out = p;
  return GRAD_OK;
}

/* The plan for `threads`, made (and the weights folded) on first use. */
static grad_status find_plan(const grad_store *s, int threads, const plan **out) {
  struct grad__store_dnnl *e = s->infer;
  pthread_mutex_lock(&e->lock);
  if (e->generation != s->generation || e->precision != s->precision || !e->bias) {
    drop_cache(s, e); /* new values or precision: start again */
    e->generation = s->generation;
    e->precision = s->precision;
  }
  grad_status st = e->bias ? GRAD_OK : fold_all(s, e);
  plan *p = e->plans;
  while (p && p->threads != threads) p = p->next;
  if (st == GRAD_OK && !p) {
    grad__team_scope scope = grad__team_enter(threads);
    st = make_plan(s, e, threads, &p);
    grad__team_leave(scope);
    if (st == GRAD_OK) {
      p->next = e->plans;
      e->plans = p;
    }
    grad__free(e->folded); /* laid out now; remade if another layout is asked for */
    e->folded = NULL;
  }
  if (st != GRAD_OK) drop_cache(s, e);
  pthread_mutex_unlock(&e->lock);
  *out = p;
  return st;
}

/* A call's maps, plans and buffer sets. */
typedef struct call {
  const grad_store *s;
  const plan *plan[2];           /* [0] one thread, [1] the team */
  const float *x;
  float *out;
  void *buf[GRAD__STORE_DNNL_WORKERS][3];  /* x (blocked), t, scratch */
} call;

static grad_status map_item(void *data, dnnl_stream_t st, int worker, int map, bool team) {
  const call *c = data;
  const plan *p = c->plan[team];
  void *const *const *w = p->weights;
  void *x = c->buf[worker][0], *t = c->buf[worker][1], *scratch = c->buf[worker][2];
  const grad_store *s = c->s;
  const int C2 = 2 * s->config.channels;
  const size_t P = plane_of(s);
  grad__dnnl_arg in[] = {{DNNL_ARG_FROM, &p->plain_in, c->x + (size_t)map * C2 * P},
                         {DNNL_ARG_TO, &p->conv[CONV1].src, x}};
  grad_status r = grad__dnnl_exec(p->to_blocked, st, in, 2, "the decoder's input");
  for (int b = 0; r == GRAD_OK && b < s->config.blocks; b++) {
    const float *bias = s->infer->bias + (size_t)b * 2 * C2;
    r = grad__dnnl_conv_run(&p->conv[CONV1], st, x, w[CONV1][b], bias, t, scratch, "the decoder");
    if (r == GRAD_OK)
      r = grad__dnnl_conv_run(&p->conv[CONV2], st, t, w[CONV2][b], bias + C2, x, scratch,
                              "the decoder");
  }
  const float *zeros = s->infer->bias + (size_t)s->config.blocks * 2 * C2;
  if (r == GRAD_OK)
    r = grad__dnnl_conv_run(&p->conv[OUT], st, x, w[OUT][0], zeros, t, scratch, "the decoder");
  if (r == GRAD_OK) {
    grad__dnnl_arg o[] = {{DNNL_ARG_FROM, &p->conv[OUT].dst, t},
                          {DNNL_ARG_TO, &p->plain_out, c->out + (size_t)map * (C2 / 2) * P}};
    r = grad__dnnl_exec(p->to_plain, st, o, 2, "the decoder's output");
  }
  return r;
}

static grad_status take(void *data, grad_workspace *ws, int worker, bool team) {
  call *c = data;
  const plan *p = c->plan[team];
  void **buf = c->buf[worker];
  buf[0] = grad__ws_alloc(ws, p->act_bytes);
  buf[1] = grad__ws_alloc(ws, p->act_bytes);
  buf[2] = p->scratch_bytes ? grad__ws_alloc(ws, p->scratch_bytes) : NULL;
  if (!buf[0] || !buf[1] || (p->scratch_bytes && !buf[2]))
    return grad__fail(GRAD_E_NOMEM, "out of workspace memory in the decoder");
  return GRAD_OK;
}

bool grad__store_dnnl_applies(const grad_store *s) {
  return s->infer && s->config.decoder == GRAD__DECODER_BASIC && grad__dnnl_available();
}

grad_status grad__store_decode_dnnl(const grad_store *s, grad_workspace *ws, const float *x,
                                    int n, float *out) {
  const int threads = grad__threads(ws);
  call c = {.s = s, .x = x, .out = out};
  grad_status st = find_plan(s, 1, &c.plan[0]);
  if (st == GRAD_OK) st = find_plan(s, threads > 1 ? threads : 1, &c.plan[1]);
  if (st != GRAD_OK) return st;
  return grad__dnnl_items_run(grad__dnnl_split_of(n, threads, GRAD__STORE_DNNL_WORKERS), threads,
                              ws, take, map_item, &c);
}

#else /* no oneDNN */

grad_status grad__store_dnnl_create(grad_store *s) {
  s->infer = NULL;
  return GRAD_OK;
}
void grad__store_dnnl_free(grad_store *s) { (void)s; }
size_t grad__store_engine_bytes(const grad_store *s) {
  (void)s;
  return 0;
}
bool grad__store_dnnl_applies(const grad_store *s) {
  (void)s;
  return false;
}
grad_status grad__store_decode_dnnl(const grad_store *s, grad_workspace *ws, const float *x,
                                    int n, float *out) {
  (void)s, (void)ws, (void)x, (void)n, (void)out;
  return grad__fail(GRAD_E_UNSUPPORTED, "libgrad was built without oneDNN");
}

#endif
