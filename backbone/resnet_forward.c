/*
 * The forward pass. Activations live in the workspace in C,N,H,W order
 * (each channel row holds the whole batch), so a convolution over several
 * images is one GEMM per column block; four buffers rotate through each
 * block.
 *
 * Images go in groups of up to 8, and a group is split by map size: the
 * stem and the blocks whose output maps are large (more than 24 x 24) run
 * one image at a time, the later blocks on the whole group. Large maps
 * already make wide GEMMs, and a group's activations there would no longer
 * stay in cache between layers (measured: at 224 x 224, running everything
 * on 8 images at once was slower per image than one at a time); small maps
 * make thin GEMMs that OpenBLAS spreads badly over threads (14 x 14:
 * 196 columns, about 170 GFLOP/s on 2 threads against 280 for 8 images).
 */
#include <string.h>

#include "backbone_internal.h"
#include "efficientnet_internal.h"
#include "threading.h"
#include "upsample.h"

enum { GROUP_MAX = GRAD__BB_GROUP_MAX, SMALL_MAP = 24 * 24 };

/* How a group of n images goes through the network. */
typedef struct plan {
  int n;
  int split;       /* blocks [0, split) run per image, [split, count) per group */
  size_t single;   /* floats of the largest one-image activation before split */
  size_t batched;  /* floats per image of the largest activation from split on
                      (the input of block split included) */
  size_t scratch;  /* floats of the largest convolution scratch */
} plan;

static void note(size_t *max, size_t value) {
  if (value > *max) *max = value;
}

static plan make_plan(const grad_backbone *bb, int n) {
  plan p = {n, bb->block_count, 0, 0, 0};
  const int s = bb->input_size;
  note(&p.single, (size_t)64 * bb->stage_size[0] * bb->stage_size[0]);
  note(&p.scratch, grad__conv_scratch_floats(&bb->stem.shape, 1, s, s));
  int size = bb->stage_size[1];
  for (int b = 0; b < bb->block_count; b++) {
    const grad__bb_block *blk = &bb->blocks[b];
    int out = size;
    for (int i = 0; i < blk->convs; i++) out = grad__conv_out_size(&blk->conv[i].shape, out);
    bool batched = n > 1 && (size_t)out * out <= SMALL_MAP;
    if (batched && p.split == bb->block_count) {
      p.split = b;
      note(&p.batched, (size_t)blk->conv[0].shape.in_channels * size * size);
    }
    size_t *act = batched ? &p.batched : &p.single;
    int images = batched ? n : 1;
    int in = size;
    for (int i = 0; i < blk->convs; i++) {
      const grad__conv *c = &blk->conv[i].shape;
      int o = grad__conv_out_size(c, in);
      note(act, (size_t)c->out_channels * o * o);
      note(&p.scratch, grad__conv_scratch_floats(c, images, in, in));
      in = o;
    }
    if (blk->downsample)
      note(&p.scratch, grad__conv_scratch_floats(&blk->down.shape, images, size, size));
    size = out;
  }
  return p;
}

typedef grad__bb_sink stage_sink;

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

/*
 * Blocks [b0, b1) on *x: n images of side *size in C,N,H,W order (images
 * first .. first + n - 1 of the group), rotating through buf (which holds
 * *x); the result replaces *x and *size.
 */
static grad_status run_blocks(const grad_backbone *bb, grad_workspace *ws, float *const buf[4],
                              int b0, int b1, int n, int first, float **xp, int *sizep,
                              stage_sink sink, void *ctx) {
  float *x = *xp;
  int size = *sizep;
  grad_status st = GRAD_OK;
  for (int b = b0; st == GRAD_OK && b < b1; b++) {
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
      sink(ctx, blk->stage, x, n, first, bb->stage_channels[blk->stage], size);
  }
  *xp = x;
  *sizep = size;
  return st;
}

static grad_status take_buffers(grad_workspace *ws, size_t floats, float *buf[4]) {
  for (int i = 0; i < 4; i++)
    if (!(buf[i] = grad__ws_floats(ws, floats))) return GRAD_E_NOMEM;
  return GRAD_OK;
}

/* n (<= GROUP_MAX) images through the network, per the plan (the im2col engine). */
static grad_status run_group_im2col(const grad_backbone *bb, grad_workspace *ws,
                                    const float *images, int n, stage_sink sink, void *ctx) {
  const plan p = make_plan(bb, n);
  const bool batched = p.split < bb->block_count;
  const int s = bb->input_size;
  size_t mark = grad__ws_mark(ws);
  float *one[4], *group[4];
  grad_status st = take_buffers(ws, p.single, one);
  if (st == GRAD_OK && batched) st = take_buffers(ws, (size_t)n * p.batched, group);
  int size = 0;
  float *x = NULL;
  for (int i = 0; st == GRAD_OK && i < n; i++) {
    /* The stem reads the caller's N,C,H,W image directly. */
    st = grad__conv2d_strided(&bb->stem.shape, bb->stem.weight, bb->stem.bias, NULL, true,
                              images + (size_t)i * 3 * s * s, (size_t)s * s, 0, 1, s, s, one[1],
                              ws);
    if (st != GRAD_OK) break;
    const int stem = bb->stage_size[0];
    pool_job job = {one[1], one[0], 64, stem, stem};
    grad__parallel(grad__parallel_width(job.planes * stem * stem), maxpool_part, &job);
    x = one[0];
    size = bb->stage_size[1];
    st = run_blocks(bb, ws, one, 0, p.split, 1, i, &x, &size, sink, ctx);
    if (st == GRAD_OK && batched) { /* image i's channels into plane (c, i) of the group */
      const int channels = bb->blocks[p.split].conv[0].shape.in_channels;
      const size_t plane = (size_t)size * size;
      for (int c = 0; c < channels; c++)
        memcpy(group[0] + ((size_t)c * n + i) * plane, x + c * plane, sizeof(float) * plane);
    }
  }
  if (st == GRAD_OK && batched) {
    x = group[0];
    st = run_blocks(bb, ws, group, p.split, bb->block_count, n, 0, &x, &size, sink, ctx);
  }
  grad__ws_release(ws, mark);
  return st;
}

static grad_status run_group(const grad_backbone *bb, grad_workspace *ws, const float *images,
                             int n, stage_sink sink, void *ctx) {
  if (bb->engine == GRAD_ENGINE_ONEDNN) return grad__bb_dnnl_run(bb, ws, images, n, sink, ctx);
  return run_group_im2col(bb, ws, images, n, sink, ctx);
}

grad_status grad__bb_check_call(const grad_backbone *bb, grad_workspace *ws, const float *images,
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

static void stages_sink(void *ctx, int stage, const float *x, int n, int first, int channels,
                        int size) {
  const stages_ctx *c = ctx;
  float *dst = c->stages[stage];
  if (!dst) return;
  size_t plane = (size_t)size * size;
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < channels; ch++)
      memcpy(dst + ((size_t)(c->first + first + i) * channels + ch) * plane,
             x + ((size_t)ch * n + i) * plane, sizeof(float) * plane);
}

grad_status grad__backbone_stages(const grad_backbone *bb, grad_workspace *ws,
                                  const float *images, int n, float *const stages[5]) {
  if (bb && bb->effnet && stages) { /* layer 5 only through grad__effnet_stages */
    float *const all[6] = {stages[0], stages[1], stages[2], stages[3], stages[4], NULL};
    return grad__effnet_stages(bb, ws, images, n, bb->input_size, bb->input_size, all);
  }
  grad_status st = grad__bb_check_call(bb, ws, images, n, stages, "grad__backbone_stages");
  if (st != GRAD_OK) return st;
  const size_t image_floats = (size_t)3 * bb->input_size * bb->input_size;
  for (int first = 0; st == GRAD_OK && first < n; first += GROUP_MAX) {
    int count = n - first < GROUP_MAX ? n - first : GROUP_MAX;
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
  float *out;  /* the features of the stage output's first image */
  int n, channels, offset, size, fs, feature_channels;
} resize_job;

/* Resizes this part's share of the (channel, image) planes into place. */
static void resize_part(void *ctx, int part, int parts) {
  const resize_job *j = ctx;
  const size_t planes = (size_t)j->n * j->channels;
  const size_t in_plane = (size_t)j->size * j->size, out_plane = (size_t)j->fs * j->fs;
  for (size_t p = planes * part / parts; p < planes * (part + 1) / parts; p++) {
    size_t ch = p / j->n, i = p % j->n; /* plane p of the C,N,H,W stage output */
    float *dst = j->out + (i * j->feature_channels + j->offset + ch) * out_plane;
    if (j->size == j->fs) /* align_corners at the same size is the identity */
      memcpy(dst, j->x + p * in_plane, sizeof(float) * in_plane);
    else
      grad__resize_bilinear_ac(j->x + p * in_plane, 1, j->size, j->size, dst, j->fs, j->fs);
  }
}

static void neck_sink(void *ctx, int stage, const float *x, int n, int first, int channels,
                      int size) {
  const neck_ctx *c = ctx;
  const grad_backbone *bb = c->bb;
  int offset = 0; /* channels of the chosen stages before this one */
  for (int k = 1; k < stage; k++)
    if (bb->layers & GRAD_BACKBONE_LAYER(k)) offset += bb->stage_channels[k];
  const size_t feature_floats =
      (size_t)bb->feature_channels * bb->feature_size * bb->feature_size;
  resize_job job = {x,      c->out + first * feature_floats, n, channels, offset, size,
                    bb->feature_size, bb->feature_channels};
  size_t work = (size_t)n * channels * (size_t)bb->feature_size * bb->feature_size;
  grad__parallel(grad__parallel_width(work), resize_part, &job);
}

grad_status grad__backbone_features(const grad_backbone *bb, grad_workspace *ws,
                                    const float *images, int n, float *out) {
  if (bb && bb->effnet) return grad__effnet_features(bb, ws, images, n, out);
  grad_status st = grad__bb_check_call(bb, ws, images, n, out, "grad_backbone_features");
  if (st != GRAD_OK) return st;
  const size_t image_floats = (size_t)3 * bb->input_size * bb->input_size;
  const size_t feature_floats = (size_t)bb->feature_channels * bb->feature_size * bb->feature_size;
  for (int first = 0; st == GRAD_OK && first < n; first += GROUP_MAX) {
    int count = n - first < GROUP_MAX ? n - first : GROUP_MAX;
    neck_ctx ctx = {bb, out + first * feature_floats};
    st = run_group(bb, ws, images + first * image_floats, count, neck_sink, &ctx);
  }
  return st;
}

/* Workspace bytes run_group takes for n images, rounded as the arena rounds. */
static size_t group_bytes(const grad_backbone *bb, int n, int threads, grad_status *st) {
  if (bb->engine == GRAD_ENGINE_ONEDNN) return grad__bb_dnnl_bytes(bb, n, threads, st);
  *st = GRAD_OK;
  const plan p = make_plan(bb, n);
  size_t bytes =
      4 * grad__ws_round(p.single * sizeof(float)) + grad__ws_round(p.scratch * sizeof(float));
  if (p.split < bb->block_count) bytes += 4 * grad__ws_round((size_t)n * p.batched * sizeof(float));
  return bytes;
}

grad_status grad_backbone_features(const grad_backbone *bb, grad_workspace *ws,
                                   const float *images, int n, float *out) {
  grad_status st = grad__bb_check_call(bb, ws, images, n, out, "grad_backbone_features");
  if (st != GRAD_OK) return st;
  /* One block for the whole call: the passes release their scratch as they
   * go, so without this the arena would not settle into one block. */
  grad__ws_reset(ws);
  const int threads = grad__threads(ws);
  size_t bytes = bb->effnet ? grad__effnet_workspace_bytes(bb, n)
                            : group_bytes(bb, n < GROUP_MAX ? n : GROUP_MAX, threads, &st);
  if (st == GRAD_OK && !bb->effnet && n > GROUP_MAX && n % GROUP_MAX) {
    /* the last, smaller group may be planned otherwise */
    size_t last = group_bytes(bb, n % GROUP_MAX, threads, &st);
    if (last > bytes) bytes = last;
  }
  if (st == GRAD_OK) st = grad__ws_reserve(ws, bytes);
  if (st != GRAD_OK) return st;
  return grad__backbone_features(bb, ws, images, n, out);
}
