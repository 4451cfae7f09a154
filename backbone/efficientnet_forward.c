/*
 * The EfficientNet forward pass, one image at a time in C,H,W order (a
 * group of images in one GEMM would not save anything here: the 1x1
 * convolutions of one image at 224 px already have 196 to 12544 columns,
 * and the squeeze-and-excitation scale differs per image).
 *
 * An MBConv block is three passes over its activations:
 *   expand:    GEMM (column blocks) + bias + swish while the block is hot;
 *   depthwise: the direct kernel of lib/kernels/depthwise_fused.c, bias + swish,
 *              and the per-channel sums SE needs, in one pass;
 *   project:   SE's per-channel scale folded into the projection's weights
 *              (W diag(s): Cout x Cexp multiplies, fewer than one pass over
 *              the Cexp x H x W activation), GEMM + bias + residual.
 */
#include <math.h>
#include <string.h>

#include "depthwise_fused.h"
#include "efficientnet_internal.h"
#include "threading.h"
#include "upsample.h"

enum { GEMM_BLOCK = 4096 };

typedef struct geometry {
  int h, w;  /* input of the network */
} geometry;

/* Padding before the first row (or column) of a kxk/stride conv on `in`
 * values giving `out`: k/2 (torchvision) or half of TF's "same" total. */
static int pad_before(const grad__effnet *net, int in, int out, int kernel, int stride) {
  if (net->arch.layout == GRAD__EFFNET_TORCHVISION) return kernel / 2;
  int total = (out - 1) * stride + kernel - in;
  return total > 0 ? total / 2 : 0;
}

static int half(int v) { return (v + 1) / 2; }

/* ---- Workspace plan --------------------------------------------------------- */

typedef struct plan {
  size_t act;      /* floats of each of the three activation buffers */
  size_t padded;   /* floats of the padded input image */
  size_t scratch;  /* floats of the stem convolution's scratch */
  size_t se;       /* floats of SE's vectors and the scaled projection */
} plan;

static void note(size_t *max, size_t v) {
  if (v > *max) *max = v;
}

static plan make_plan(const grad_backbone *bb, int h, int w) {
  const grad__effnet *net = bb->effnet;
  plan p = {0, 0, 0, 0};
  const int h1 = half(h), w1 = half(w);
  const int ph = (h1 - 1) * 2 + 3, pw = (w1 - 1) * 2 + 3; /* padded to give h1 x w1, pad 0 */
  p.padded = (size_t)3 * ph * pw;
  const grad__conv stem = {3, net->stage_channels[0], 3, 2, 0};
  p.scratch = grad__conv_scratch_floats(&stem, 1, ph, pw);
  note(&p.act, (size_t)net->stage_channels[0] * h1 * w1);
  int hh = h1, ww = w1;
  for (int b = 0; b < net->block_count; b++) {
    const grad__effnet_block *blk = &net->blocks[b];
    note(&p.act, (size_t)blk->cexp * hh * ww);
    if (blk->stride == 2) hh = half(hh), ww = half(ww);
    note(&p.act, (size_t)blk->cout * hh * ww);
    note(&p.se, 2 * (size_t)blk->cexp + blk->csq + (size_t)blk->cout * blk->cexp);
  }
  return p;
}

size_t grad__effnet_workspace_bytes(const grad_backbone *bb, int n) {
  (void)n; /* one image at a time */
  const plan p = make_plan(bb, bb->input_size, bb->input_size);
  return 3 * grad__ws_round(p.act * sizeof(float)) + grad__ws_round(p.padded * sizeof(float)) +
         grad__ws_round(p.scratch * sizeof(float)) + grad__ws_round(p.se * sizeof(float));
}

/* ---- Passes ------------------------------------------------------------------ */

typedef struct rows_job {
  float *y;
  size_t ld, cols;
  int rows;
  const float *bias, *residual;
  int swish;
} rows_job;

static void rows_part(void *ctx, int part, int parts) {
  const rows_job *j = ctx;
  int r0 = (int)((long long)j->rows * part / parts), r1 = (int)((long long)j->rows * (part + 1) / parts);
  grad__bias_act_rows(j->y, j->ld, j->cols, r0, r1, j->bias, j->residual, j->swish);
}

/* y (cout x cols) = weight (cout x cin) x (cin x cols) + bias [+ residual],
 * then swish when asked: GEMMs over column blocks, each followed by its
 * epilogue while it is still in cache. */
static void pointwise(const float *weight, const float *bias, int cout, int cin, const float *x,
                      size_t cols, float *y, const float *residual, int swish) {
  size_t blocks = (cols + GEMM_BLOCK - 1) / GEMM_BLOCK;
  size_t step = (cols + blocks - 1) / blocks;
  step = (step + 15) & ~(size_t)15;
  for (size_t c0 = 0; c0 < cols; c0 += step) {
    size_t count = cols - c0 < step ? cols - c0 : step;
    grad__sgemm(false, false, cout, (int)count, cin, 1.0f, weight, cin, x + c0, (int)cols, 0.0f,
                y + c0, (int)cols, 0);
    rows_job job = {y + c0, cols, count, cout, bias, residual ? residual + c0 : NULL, swish};
    grad__parallel(grad__parallel_width((size_t)cout * count), rows_part, &job);
  }
}

typedef struct dw_job {
  const grad__dw_shape *shape;
  const float *x, *weight, *bias;
  float *y, *sums;
  int channels;
} dw_job;

static void dw_part(void *ctx, int part, int parts) {
  const dw_job *j = ctx;
  int c0 = (int)((long long)j->channels * part / parts);
  int c1 = (int)((long long)j->channels * (part + 1) / parts);
  grad__depthwise_swish(j->shape, j->x, j->weight, j->bias, c0, c1, j->y, j->sums);
}

static float sigmoid(double v) { return (float)(1.0 / (1.0 + exp(-v))); }

/* SE's scale s (cexp) from the depthwise output's sums, folded into the
 * projection: scaled[o][c] = project[o][c] * s[c]. */
static void excite(const grad__effnet_block *blk, const float *sums, double positions,
                   float *squeezed, float *scale, float *scaled) {
  const grad__effnet_conv *r = blk->se_reduce, *e = blk->se_expand;
  for (int j = 0; j < blk->csq; j++) {
    double acc = r->bias[j];
    const float *wr = r->weight + (size_t)j * blk->cexp;
    for (int c = 0; c < blk->cexp; c++) acc += (double)wr[c] * (sums[c] / positions);
    squeezed[j] = (float)(acc / (1.0 + exp(-acc)));
  }
  for (int c = 0; c < blk->cexp; c++) {
    double acc = e->bias[c];
    const float *we = e->weight + (size_t)c * blk->csq;
    for (int j = 0; j < blk->csq; j++) acc += (double)we[j] * squeezed[j];
    scale[c] = sigmoid(acc);
  }
  const float *wp = blk->project->weight;
  for (int o = 0; o < blk->cout; o++)
    for (int c = 0; c < blk->cexp; c++)
      scaled[(size_t)o * blk->cexp + c] = wp[(size_t)o * blk->cexp + c] * scale[c];
}

/* Receives a requested layer of image `image`: C x h x w. */
typedef void (*layer_sink)(void *ctx, int layer, int image, const float *x, int channels, int h,
                           int w);

/* The layer (1..5) a stage's output is, or 0. */
static int stage_layer(int stage) {
  for (int k = 1; k <= GRAD__EFFNET_LAYERS; k++)
    if (grad__effnet_layer_stage(k) == stage) return k;
  return 0;
}

static grad_status run_image(const grad_backbone *bb, grad_workspace *ws, const plan *p,
                             const float *image, int h, int w, int index, layer_sink sink,
                             void *ctx) {
  const grad__effnet *net = bb->effnet;
  size_t mark = grad__ws_mark(ws);
  float *buf[3], *padded = grad__ws_floats(ws, p->padded), *se = grad__ws_floats(ws, p->se);
  for (int i = 0; i < 3; i++) buf[i] = grad__ws_floats(ws, p->act);
  if (!padded || !se || !buf[0] || !buf[1] || !buf[2]) {
    grad__ws_release(ws, mark);
    return grad__fail(GRAD_E_NOMEM, "out of memory running the backbone");
  }
  /* Stem: the image padded as the layout pads it, then a 3x3/2 conv. */
  int hh = half(h), ww = half(w);
  const int ph = (hh - 1) * 2 + 3, pw = (ww - 1) * 2 + 3;
  const int top = pad_before(net, h, hh, 3, 2), left = pad_before(net, w, ww, 3, 2);
  memset(padded, 0, sizeof(float) * p->padded);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < h && y + top < ph; y++) {
      int count = w < pw - left ? w : pw - left;
      memcpy(padded + ((size_t)c * ph + y + top) * pw + left, image + ((size_t)c * h + y) * w,
             sizeof(float) * count);
    }
  const grad__effnet_conv *stem = &net->convs[0];
  const grad__conv stem_shape = {3, stem->cout, 3, 2, 0};
  grad_status st = grad__conv2d_strided(&stem_shape, stem->weight, NULL, NULL, false, padded,
                                        (size_t)ph * pw, 0, 1, ph, pw, buf[0], ws);
  if (st != GRAD_OK) {
    grad__ws_release(ws, mark);
    return st;
  }
  {
    rows_job job = {buf[0], (size_t)hh * ww, (size_t)hh * ww, stem->cout, stem->bias, NULL, 1};
    grad__parallel(grad__parallel_width((size_t)stem->cout * hh * ww), rows_part, &job);
  }
  float *x = buf[0];
  for (int b = 0; b < net->block_count; b++) {
    const grad__effnet_block *blk = &net->blocks[b];
    float *others[2];
    for (int i = 0, j = 0; i < 3; i++)
      if (buf[i] != x) others[j++] = buf[i];
    const size_t cols = (size_t)hh * ww;
    float *e = x;
    if (blk->expand) {
      e = others[0];
      pointwise(blk->expand->weight, blk->expand->bias, blk->cexp, blk->cin, x, cols, e, NULL, 1);
    }
    const int oh = blk->stride == 2 ? half(hh) : hh, ow = blk->stride == 2 ? half(ww) : ww;
    const grad__dw_shape shape = {blk->kernel, blk->stride, hh, ww, oh, ow,
                                  pad_before(net, hh, oh, blk->kernel, blk->stride),
                                  pad_before(net, ww, ow, blk->kernel, blk->stride)};
    float *d = e == others[0] ? others[1] : others[0];
    float *sums = se, *scale = se + blk->cexp, *squeezed = scale + blk->cexp;
    float *scaled = squeezed + blk->csq;
    dw_job job = {&shape, e, blk->depthwise->weight, blk->depthwise->bias, d, sums, blk->cexp};
    grad__parallel(grad__parallel_width((size_t)blk->cexp * oh * ow * blk->kernel), dw_part,
                   &job);
    excite(blk, sums, (double)oh * ow, squeezed, scale, scaled);
    /* The output goes where nothing is read any more: the expanded
     * activation's buffer, or (no expansion) the one left. */
    float *y = e != x ? e : (d == others[0] ? others[1] : others[0]);
    pointwise(scaled, blk->project->bias, blk->cout, blk->cexp, d, (size_t)oh * ow, y,
              blk->residual ? x : NULL, 0);
    x = y, hh = oh, ww = ow;
    bool stage_end = b + 1 == net->block_count || net->blocks[b + 1].stage != blk->stage;
    int layer = stage_end ? stage_layer(blk->stage) : 0;
    if (layer && (bb->layers & GRAD_BACKBONE_LAYER(layer)))
      sink(ctx, layer, index, x, blk->cout, hh, ww);
  }
  grad__ws_release(ws, mark);
  return GRAD_OK;
}

/* ---- Raw stages ---------------------------------------------------------------- */

typedef struct stages_ctx {
  float *const *stages;
} stages_ctx;

static void stages_sink(void *ctx, int layer, int image, const float *x, int channels, int h,
                        int w) {
  const stages_ctx *c = ctx;
  if (!c->stages[layer]) return;
  size_t floats = (size_t)channels * h * w;
  memcpy(c->stages[layer] + (size_t)image * floats, x, sizeof(float) * floats);
}

grad_status grad__effnet_stages(const grad_backbone *bb, grad_workspace *ws, const float *images,
                                int n, int h, int w, float *const stages[6]) {
  grad_status st = grad__bb_check_call(bb, ws, images, n, stages, "grad__backbone_stages");
  if (st != GRAD_OK) return st;
  if (h < 32 || w < 32 || h > 4096 || w > 4096)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__backbone_stages: %d x %d images (32..4096)", h, w);
  const plan p = make_plan(bb, h, w);
  stages_ctx ctx = {stages};
  for (int i = 0; st == GRAD_OK && i < n; i++)
    st = run_image(bb, ws, &p, images + (size_t)i * 3 * h * w, h, w, i, stages_sink, &ctx);
  return st;
}

/* ---- The neck -------------------------------------------------------------------- */

typedef struct neck_ctx {
  const grad_backbone *bb;
  float *out;
} neck_ctx;

typedef struct resize_job {
  const float *x;
  float *dst;
  int channels, h, w, fs;
} resize_job;

static void resize_part(void *ctx, int part, int parts) {
  const resize_job *j = ctx;
  int c0 = (int)((long long)j->channels * part / parts);
  int c1 = (int)((long long)j->channels * (part + 1) / parts);
  const size_t in_plane = (size_t)j->h * j->w, out_plane = (size_t)j->fs * j->fs;
  if (c1 <= c0) return;
  if (j->h == j->fs && j->w == j->fs)
    memcpy(j->dst + c0 * out_plane, j->x + c0 * in_plane, sizeof(float) * in_plane * (c1 - c0));
  else
    grad__resize_bilinear_ac(j->x + c0 * in_plane, c1 - c0, j->h, j->w, j->dst + c0 * out_plane,
                             j->fs, j->fs);
}

static void neck_sink(void *ctx, int layer, int image, const float *x, int channels, int h,
                      int w) {
  const neck_ctx *c = ctx;
  const grad_backbone *bb = c->bb;
  int offset = 0;
  for (int k = 1; k < layer; k++)
    if (bb->layers & GRAD_BACKBONE_LAYER(k)) offset += bb->stage_channels[k];
  const size_t plane = (size_t)bb->feature_size * bb->feature_size;
  float *dst = c->out + ((size_t)image * bb->feature_channels + offset) * plane;
  resize_job job = {x, dst, channels, h, w, bb->feature_size};
  grad__parallel(grad__parallel_width((size_t)channels * plane), resize_part, &job);
}

grad_status grad__effnet_features(const grad_backbone *bb, grad_workspace *ws,
                                  const float *images, int n, float *out) {
  grad_status st = grad__bb_check_call(bb, ws, images, n, out, "grad_backbone_features");
  if (st != GRAD_OK) return st;
  const int s = bb->input_size;
  const plan p = make_plan(bb, s, s);
  neck_ctx ctx = {bb, out};
  for (int i = 0; st == GRAD_OK && i < n; i++)
    st = run_image(bb, ws, &p, images + (size_t)i * 3 * s * s, s, s, i, neck_sink, &ctx);
  return st;
}
