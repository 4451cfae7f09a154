/*
 * The forward pass. Activations live in the workspace in C,N,H,W order
 * (each channel row holds the whole batch), so every convolution is one
 * GEMM per column block over all images; four buffers of the largest
 * activation rotate through each block.
 */
#include <string.h>

#include "backbone.h"
#include "upsample.h"

/*
 * Images per pass. Batching puts the columns of several images into one
 * GEMM, which only pays while the maps are small: with large maps one
 * image's activations already make wide GEMMs, and a batch's would no
 * longer stay in cache between layers (measured: per-image time at batch 8
 * was worse than at batch 1 for 224 x 224 inputs). So a pass takes as many
 * images as keep layer1's columns within one 56 x 56 map, at most 8, which
 * also bounds the workspace.
 */
enum { GROUP_MAX = 8, GROUP_COLUMNS = 56 * 56 };

static int group_images(const grad_backbone *bb, int n) {
  int per = GROUP_COLUMNS / (bb->stage_size[1] * bb->stage_size[1]);
  if (per < 1) per = 1;
  if (per > GROUP_MAX) per = GROUP_MAX;
  return n < per ? n : per;
}

/* Receives each requested stage's output for the images of one group. */
typedef void (*stage_sink)(void *ctx, int stage, const float *x, int n, int channels,
                           int size);

static inline float max2(float a, float b) { return a > b ? a : b; }

/* Max over in[2x-1 .. 2x+1] clipped to [0, w), for every output x, into
 * out (first row of the window) or max-ed into it (later rows). The
 * interior has no clipping, so the compiler vectorises it. */
static void row_max3(const float *in, int w, float *out, int ow, bool first) {
  int interior = (w - 2) / 2 + 1; /* ox < interior has 2 * ox + 1 < w */
  if (interior > ow) interior = ow;
  float m0 = w > 1 ? max2(in[0], in[1]) : in[0];
  out[0] = first ? m0 : max2(out[0], m0);
  if (first)
    for (int ox = 1; ox < interior; ox++)
      out[ox] = max2(max2(in[2 * ox - 1], in[2 * ox]), in[2 * ox + 1]);
  else
    for (int ox = 1; ox < interior; ox++)
      out[ox] = max2(out[ox], max2(max2(in[2 * ox - 1], in[2 * ox]), in[2 * ox + 1]));
  for (int ox = interior > 1 ? interior : 1; ox < ow; ox++) { /* the window hits the edge */
    float m = max2(in[2 * ox - 1], in[2 * ox < w ? 2 * ox : w - 1]);
    out[ox] = first ? m : max2(out[ox], m);
  }
}

void grad__maxpool_3x3s2(const float *x, size_t planes, int h, int w, float *y) {
  const int oh = (h - 1) / 2 + 1, ow = (w - 1) / 2 + 1;
  for (size_t p = 0; p < planes; p++) {
    const float *in = x + p * h * w;
    float *out = y + p * oh * ow;
    for (int oy = 0; oy < oh; oy++) {
      int y0 = 2 * oy - 1 < 0 ? 0 : 2 * oy - 1, y1 = 2 * oy + 1 < h ? 2 * oy + 1 : h - 1;
      for (int iy = y0; iy <= y1; iy++)
        row_max3(in + (size_t)iy * w, w, out + oy * ow, ow, iy == y0);
    }
  }
}

typedef struct pool_job {
  const float *x;
  float *y;
  size_t planes;
  int h, w;
} pool_job;

static void maxpool_part(void *ctx, int part, int parts) {
  const pool_job *j = ctx;
  size_t p0 = j->planes * part / parts, p1 = j->planes * (part + 1) / parts;
  size_t out_plane = (size_t)((j->h - 1) / 2 + 1) * ((j->w - 1) / 2 + 1);
  grad__maxpool_3x3s2(j->x + p0 * j->h * j->w, p1 - p0, j->h, j->w, j->y + p0 * out_plane);
}

/* One conv on a C,N,H,W activation of n images of size x size. */
static grad_status conv(const grad__bb_conv *c, const float *residual, bool relu, const float *x,
                        int n, int size, float *y, grad_workspace *ws) {
  size_t plane = (size_t)size * size;
  return grad__conv2d_strided(&c->shape, c->weight, c->bias, residual, relu, x, n * plane,
                              plane, n, size, size, y, ws);
}

static grad_status run_group(const grad_backbone *bb, grad_workspace *ws, const float *images,
                             int n, stage_sink sink, void *ctx) {
  const size_t act = (size_t)n * bb->max_activation;
  const int s = bb->input_size;
  size_t mark = grad__ws_mark(ws);
  float *buf[4];
  for (int i = 0; i < 4; i++) {
    buf[i] = grad__ws_floats(ws, act);
    if (!buf[i]) {
      grad__ws_release(ws, mark);
      return GRAD_E_NOMEM;
    }
  }
  /* The stem reads the caller's N,C,H,W images directly. */
  grad_status st = grad__conv2d_strided(&bb->stem.shape, bb->stem.weight, bb->stem.bias, NULL,
                                        true, images, (size_t)s * s, (size_t)3 * s * s, n, s, s,
                                        buf[1], ws);
  int size = bb->stage_size[1];
  if (st == GRAD_OK) {
    const int stem = bb->stage_size[0];
    pool_job job = {buf[1], buf[0], (size_t)64 * n, stem, stem};
    grad__parallel(grad__parallel_width(job.planes * stem * stem), maxpool_part, &job);
  }
  float *x = buf[0];
  for (int b = 0; st == GRAD_OK && b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    float *spare[3];
    for (int i = 0, j = 0; i < 4; i++)
      if (buf[i] != x) spare[j++] = buf[i];
    float *t = spare[0];
    int tsize = grad__conv_out_size(&blk->conv[0].shape, size);
    st = conv(&blk->conv[0], NULL, true, x, n, size, t, ws);
    if (st == GRAD_OK && blk->convs == 3) {
      st = conv(&blk->conv[1], NULL, true, t, n, tsize, spare[1], ws);
      t = spare[1];
      tsize = grad__conv_out_size(&blk->conv[1].shape, tsize);
    }
    const float *identity = x;
    if (st == GRAD_OK && blk->downsample) {
      st = conv(&blk->down, NULL, false, x, n, size, spare[2], ws);
      identity = spare[2];
    }
    /* The block's output overwrites a buffer nothing reads any more: the
     * first conv's (bottleneck) or the spare one (basic). */
    float *y = blk->convs == 3 ? spare[0] : spare[1];
    if (st == GRAD_OK)
      st = conv(&blk->conv[blk->convs - 1], identity, true, t, n, tsize, y, ws);
    x = y;
    size = grad__conv_out_size(&blk->conv[blk->convs - 1].shape, tsize);
    bool stage_end = b + 1 == bb->block_count || bb->blocks[b + 1].stage != blk->stage;
    if (st == GRAD_OK && stage_end && (bb->layers & GRAD_BACKBONE_LAYER(blk->stage)))
      sink(ctx, blk->stage, x, n, bb->stage_channels[blk->stage], size);
  }
  grad__ws_release(ws, mark);
  return st;
}

static grad_status check_call(const grad_backbone *bb, grad_workspace *ws, const float *images,
                              int n, const void *out, const char *fn) {
  if (!bb || !ws || !images || !out)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: NULL argument", fn);
  if (n < 1) return grad__fail(GRAD_E_INVALID_ARG, "%s: n is %d, must be >= 1", fn, n);
  return GRAD_OK;
}

/* ---- Raw stages ------------------------------------------------------------ */

typedef struct stages_ctx {
  float *const *stages;
  int first;  /* index of the group's first image */
} stages_ctx;

static void stages_sink(void *ctx, int stage, const float *x, int n, int channels, int size) {
  const stages_ctx *c = ctx;
  float *dst = c->stages[stage];
  if (!dst) return;
  size_t plane = (size_t)size * size;
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < channels; ch++)
      memcpy(dst + ((size_t)(c->first + i) * channels + ch) * plane,
             x + ((size_t)ch * n + i) * plane, sizeof(float) * plane);
}

grad_status grad__backbone_stages(const grad_backbone *bb, grad_workspace *ws,
                                  const float *images, int n, float *const stages[5]) {
  grad_status st = check_call(bb, ws, images, n, stages, "grad__backbone_stages");
  if (st != GRAD_OK) return st;
  const size_t image_floats = (size_t)3 * bb->input_size * bb->input_size;
  const int group = group_images(bb, n);
  for (int first = 0; st == GRAD_OK && first < n; first += group) {
    int count = n - first < group ? n - first : group;
    stages_ctx ctx = {stages, first};
    st = run_group(bb, ws, images + first * image_floats, count, stages_sink, &ctx);
  }
  return st;
}

/* ---- The neck: align and concatenate ----------------------------------------- */

typedef struct neck_ctx {
  const grad_backbone *bb;
  float *out;  /* the group's first image */
} neck_ctx;

typedef struct resize_job {
  const float *x;
  float *out;         /* the group's first image's features */
  int n, channels, offset, size, fs, feature_channels;
} resize_job;

/* Resizes this part's share of the (channel, image) planes into place. */
static void resize_part(void *ctx, int part, int parts) {
  const resize_job *j = ctx;
  const size_t planes = (size_t)j->n * j->channels;
  const size_t in_plane = (size_t)j->size * j->size, out_plane = (size_t)j->fs * j->fs;
  for (size_t p = planes * part / parts; p < planes * (part + 1) / parts; p++) {
    size_t ch = p / j->n, i = p % j->n; /* plane p of the C,N,H,W stage output */
    grad__resize_bilinear_ac(j->x + p * in_plane, 1, j->size, j->size,
                             j->out + (i * j->feature_channels + j->offset + ch) * out_plane,
                             j->fs, j->fs);
  }
}

static void neck_sink(void *ctx, int stage, const float *x, int n, int channels, int size) {
  const neck_ctx *c = ctx;
  const grad_backbone *bb = c->bb;
  int offset = 0; /* channels of the chosen stages before this one */
  for (int k = 1; k < stage; k++)
    if (bb->layers & GRAD_BACKBONE_LAYER(k)) offset += bb->stage_channels[k];
  resize_job job = {x, c->out, n, channels, offset, size, bb->feature_size, bb->feature_channels};
  size_t work = (size_t)n * channels * (size_t)bb->feature_size * bb->feature_size;
  grad__parallel(grad__parallel_width(work), resize_part, &job);
}

grad_status grad__backbone_features(const grad_backbone *bb, grad_workspace *ws,
                                    const float *images, int n, float *out) {
  grad_status st = check_call(bb, ws, images, n, out, "grad_backbone_features");
  if (st != GRAD_OK) return st;
  const size_t image_floats = (size_t)3 * bb->input_size * bb->input_size;
  const size_t feature_floats = (size_t)bb->feature_channels * bb->feature_size * bb->feature_size;
  const int group = group_images(bb, n);
  for (int first = 0; st == GRAD_OK && first < n; first += group) {
    int count = n - first < group ? n - first : group;
    neck_ctx ctx = {bb, out + first * feature_floats};
    st = run_group(bb, ws, images + first * image_floats, count, neck_sink, &ctx);
  }
  return st;
}

/* Workspace bytes run_group takes for n images: the four activation
 * buffers and the largest convolution scratch, each rounded as the arena
 * rounds (64 bytes). */
static size_t group_bytes(const grad_backbone *bb, int n) {
  size_t scratch = grad__conv_scratch_floats(&bb->stem.shape, n, bb->input_size, bb->input_size);
  int size = bb->stage_size[1];
  for (int b = 0; b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    int in = size;
    for (int i = 0; i < blk->convs; i++) {
      size_t s = grad__conv_scratch_floats(&blk->conv[i].shape, n, in, in);
      if (s > scratch) scratch = s;
      in = grad__conv_out_size(&blk->conv[i].shape, in);
    }
    if (blk->downsample) {
      size_t s = grad__conv_scratch_floats(&blk->down.shape, n, size, size);
      if (s > scratch) scratch = s;
    }
    size = in;
  }
  const size_t act = ((size_t)n * bb->max_activation * sizeof(float) + 63) & ~(size_t)63;
  return 4 * act + ((scratch * sizeof(float) + 63) & ~(size_t)63);
}

grad_status grad_backbone_features(const grad_backbone *bb, grad_workspace *ws,
                                   const float *images, int n, float *out) {
  grad_status st = check_call(bb, ws, images, n, out, "grad_backbone_features");
  if (st != GRAD_OK) return st;
  /* One block for the whole call: the passes release their scratch as they
   * go, so without this the arena would not settle into one block. */
  grad__ws_reset(ws);
  st = grad__ws_reserve(ws, group_bytes(bb, group_images(bb, n)));
  if (st != GRAD_OK) return st;
  return grad__backbone_features(bb, ws, images, n, out);
}
