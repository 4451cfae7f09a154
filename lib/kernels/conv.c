/*
 * Convolution: im2col + sgemm over bounded column blocks, with the bias,
 * residual and ReLU applied to each block while it is still in cache.
 * 1x1 stride-1 convolutions skip im2col and hand their input to the GEMM.
 */
#include <string.h>

#include "conv.h"

int grad__conv_out_size(const grad__conv *conv, int in) {
  int span = in + 2 * conv->pad - conv->kernel;
  return span < 0 ? 0 : span / conv->stride + 1;
}

double grad__conv_macs(const grad__conv *conv, int h, int w) {
  return (double)conv->out_channels * conv->in_channels * conv->kernel * conv->kernel *
         grad__conv_out_size(conv, h) * grad__conv_out_size(conv, w);
}

static int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/*
 * out[t] = in[(ox + t) * stride + offset] for t < count, 0 where that index
 * falls outside [0, w): the interior is found first so the copy loop has no
 * branches (a memcpy at stride 1).
 */
static void copy_row(const float *in, int w, int ox, int count, int stride, int offset,
                     float *out) {
  int lo = floor_div(-offset + stride - 1, stride) - ox;  /* first t with index >= 0 */
  int hi = floor_div(w - 1 - offset, stride) - ox + 1;    /* one past the last t < w */
  if (lo < 0) lo = 0;
  if (hi > count) hi = count;
  if (hi < lo) hi = lo;
  if (lo > count) lo = hi = count;
  memset(out, 0, sizeof(float) * (size_t)lo);
  if (hi > lo) {
    const float *src = in + (ptrdiff_t)(ox + lo) * stride + offset;
    if (stride == 1) {
      memcpy(out + lo, src, sizeof(float) * (size_t)(hi - lo));
    } else if (stride == 2) { /* a constant stride the compiler vectorises */
      for (int t = lo; t < hi; t++) out[t] = src[(ptrdiff_t)(t - lo) * 2];
    } else {
      for (int t = lo; t < hi; t++) out[t] = src[(ptrdiff_t)(t - lo) * stride];
    }
  }
  memset(out + hi, 0, sizeof(float) * (size_t)(count - hi));
}

/* Where column `first` of a batch's output lies: image, row, column. */
typedef struct span_start {
  size_t image;
  int oy, ox;
} span_start;

static span_start locate(size_t first, int oh, int ow) {
  size_t plane = (size_t)oh * ow;
  return (span_start){first / plane, (int)(first % plane / ow), (int)(first % ow)};
}

/*
 * Stride 1 with "same" padding, over images that lie back to back: row
 * (c, ky, kx) of the columns is channel c shifted by dy * w + dx (dy = ky -
 * pad, dx = kx - pad), so one copy fills it and only the pixels whose
 * source lies in the padding (a row above or below the image, a column off
 * its left or right edge) are zeroed afterwards.
 */
static void im2col_same_row(const grad__conv *conv, const float *x, size_t cstride,
                            size_t istride, int h, int w, size_t first, size_t count, size_t row,
                            float *out) {
  const int k = conv->kernel, p = conv->pad;
  const int c = (int)(row / (size_t)(k * k)), ky = (int)(row / (size_t)k % (size_t)k),
            kx = (int)(row % (size_t)k);
  const size_t plane = (size_t)h * w, end = first + count;
  const span_start at = locate(first, h, w);
  /* Sources are read inside the images the span touches, nowhere else. */
  const ptrdiff_t local = (ptrdiff_t)(first - at.image * plane);
  const ptrdiff_t limit = (ptrdiff_t)(((end - 1) / plane - at.image + 1) * plane);
  const float *base = x + c * cstride + at.image * istride;
  const int dy = ky - p, dx = kx - p;
  const ptrdiff_t shift = (ptrdiff_t)dy * w + dx;
  ptrdiff_t lo = -(local + shift), hi = limit - (local + shift);
  if (lo < 0) lo = 0;
  if (lo > (ptrdiff_t)count) lo = (ptrdiff_t)count;
  if (hi > (ptrdiff_t)count) hi = (ptrdiff_t)count;
  if (hi < lo) hi = lo;
  memset(out, 0, sizeof(float) * (size_t)lo);
  memcpy(out + lo, base + local + shift + lo, sizeof(float) * (size_t)(hi - lo));
  memset(out + hi, 0, sizeof(float) * (count - (size_t)hi));
  if (dy == 0 && dx == 0) return;
  int oy = at.oy, ox = at.ox;
  for (size_t j = first; j < end;) {
    int seg = w - ox;
    if ((size_t)seg > end - j) seg = (int)(end - j);
    float *o = out + (j - first);
    int iy = oy + dy;
    if (iy < 0 || iy >= h) {
      memset(o, 0, sizeof(float) * (size_t)seg);
    } else if (dx < 0) {
      for (int t = 0; t < -dx - ox && t < seg; t++) o[t] = 0.0f;
    } else if (dx > 0) {
      for (int t = w - dx - ox < 0 ? 0 : w - dx - ox; t < seg; t++) o[t] = 0.0f;
    }
    j += (size_t)seg;
    ox = 0;
    if (++oy == h) oy = 0;
  }
}

/* Any stride and padding, one output row segment at a time. */
static void im2col_general_row(const grad__conv *conv, const float *x, size_t cstride,
                               size_t istride, int h, int w, size_t first, size_t count,
                               size_t row, float *out) {
  const int k = conv->kernel, s = conv->stride, p = conv->pad;
  const int c = (int)(row / (size_t)(k * k)), ky = (int)(row / (size_t)k % (size_t)k),
            kx = (int)(row % (size_t)k);
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  const size_t end = first + count;
  span_start at = locate(first, oh, ow);
  int oy = at.oy, ox = at.ox;
  for (size_t j = first; j < end;) {
    int seg = ow - ox;
    if ((size_t)seg > end - j) seg = (int)(end - j);
    int iy = oy * s - p + ky;
    if (iy < 0 || iy >= h)
      memset(out, 0, sizeof(float) * (size_t)seg);
    else
      copy_row(x + c * cstride + at.image * istride + (size_t)iy * w, w, ox, seg, s, kx - p, out);
    out += seg;
    j += (size_t)seg;
    ox = 0;
    if (++oy == oh) {
      oy = 0;
      at.image++;
    }
  }
}

/* Rows [r0, r1) of the columns of a span (row = (c * K + ky) * K + kx). */
static void im2col_rows(const grad__conv *conv, const float *x, size_t cstride, size_t istride,
                        int h, int w, size_t first, size_t count, size_t r0, size_t r1,
                        float *columns) {
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  const size_t plane = (size_t)oh * ow, end = first + count;
  if (count == 0) return;
  const bool same = conv->stride == 1 && oh == h && ow == w &&
                    (istride == plane || first / plane == (end - 1) / plane);
  for (size_t r = r0; r < r1; r++) {
    if (same)
      im2col_same_row(conv, x, cstride, istride, h, w, first, count, r, columns + r * count);
    else
      im2col_general_row(conv, x, cstride, istride, h, w, first, count, r, columns + r * count);
  }
}

void grad__im2col_span(const grad__conv *conv, const float *x, size_t cstride, size_t istride,
                       int h, int w, size_t first, size_t count, float *columns) {
  const size_t depth = (size_t)conv->in_channels * conv->kernel * conv->kernel;
  im2col_rows(conv, x, cstride, istride, h, w, first, count, 0, depth, columns);
}

void grad__im2col(const grad__conv *conv, const float *image, int h, int w, float *columns) {
  size_t plane = (size_t)grad__conv_out_size(conv, h) * grad__conv_out_size(conv, w);
  grad__im2col_span(conv, image, (size_t)h * w, 0, h, w, 0, plane, columns);
}

void grad__col2im(const grad__conv *conv, const float *columns, int h, int w, float *image) {
  const int k = conv->kernel, s = conv->stride, p = conv->pad;
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  for (int c = 0; c < conv->in_channels; c++) {
    float *plane = image + (size_t)c * h * w;
    for (int ky = 0; ky < k; ky++) {
      for (int kx = 0; kx < k; kx++) {
        const float *row = columns + ((size_t)(c * k + ky) * k + kx) * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * s - p + ky;
          if (iy < 0 || iy >= h) continue;
          float *out = plane + (size_t)iy * w;
          const float *in = row + (size_t)oy * ow;
          for (int ox = 0; ox < ow; ox++) {
            int ix = ox * s - p + kx;
            if (ix >= 0 && ix < w) out[ix] += in[ox];
          }
        }
      }
    }
  }
}

/* Columns per GEMM: about GRAD__CONV_BLOCK_FLOATS unfolded values, but
 * never fewer than GRAD__CONV_MIN_COLUMNS: thin GEMMs lose more (OpenBLAS
 * reached 170 GFLOP/s at 196 columns and 280 at 1568 on 2 threads, for
 * 512 x 4608 weights) than a larger scratch costs. */
static size_t block_columns(size_t depth, size_t total) {
  size_t block = GRAD__CONV_BLOCK_FLOATS / depth;
  if (block < GRAD__CONV_MIN_COLUMNS) block = GRAD__CONV_MIN_COLUMNS;
  return block < total ? block : total;
}

size_t grad__conv_scratch_floats(const grad__conv *conv, int n, int h, int w) {
  const size_t depth = (size_t)conv->in_channels * conv->kernel * conv->kernel;
  const size_t total = (size_t)n * grad__conv_out_size(conv, h) * grad__conv_out_size(conv, w);
  if (conv->kernel == 1 && conv->stride == 1 && conv->pad == 0) return 0;
  return depth * block_columns(depth, total);
}

/* y += bias (+ residual), then ReLU, over count values of one channel row. */
static void epilogue(float *y, size_t count, float bias, const float *residual, bool relu) {
  if (residual && relu) {
    for (size_t j = 0; j < count; j++) {
      float v = y[j] + bias + residual[j];
      y[j] = v > 0.0f ? v : 0.0f;
    }
  } else if (residual) {
    for (size_t j = 0; j < count; j++) y[j] += bias + residual[j];
  } else if (relu) {
    for (size_t j = 0; j < count; j++) {
      float v = y[j] + bias;
      y[j] = v > 0.0f ? v : 0.0f;
    }
  } else if (bias != 0.0f) {
    for (size_t j = 0; j < count; j++) y[j] += bias;
  }
}

/* One column block of a convolution, shared by the parts of the passes
 * around its GEMM. */
typedef struct block_job {
  const grad__conv *conv;
  const float *x, *bias, *residual;
  size_t cstride, istride, first, count, total, depth;
  int h, w;
  bool relu;
  float *columns, *y;
} block_job;

static void im2col_part(void *ctx, int part, int parts) {
  const block_job *b = ctx;
  im2col_rows(b->conv, b->x, b->cstride, b->istride, b->h, b->w, b->first, b->count,
              b->depth * part / parts, b->depth * (part + 1) / parts, b->columns);
}

static void epilogue_part(void *ctx, int part, int parts) {
  const block_job *b = ctx;
  const int cout = b->conv->out_channels;
  for (int c = cout * part / parts; c < cout * (part + 1) / parts; c++)
    epilogue(b->y + c * b->total + b->first, b->count, b->bias ? b->bias[c] : 0.0f,
             b->residual ? b->residual + c * b->total + b->first : NULL, b->relu);
}

grad_status grad__conv2d_strided(const grad__conv *conv, const float *weight,
                                 const float *bias, const float *residual, bool relu,
                                 const float *x, size_t cstride, size_t istride, int n, int h,
                                 int w, float *y, grad_workspace *ws) {
  const int oh = grad__conv_out_size(conv, h), ow = grad__conv_out_size(conv, w);
  if (oh <= 0 || ow <= 0)
    return grad__fail(GRAD_E_SHAPE, "convolution input %dx%d is smaller than its %dx%d kernel",
                      h, w, conv->kernel, conv->kernel);
  const int cout = conv->out_channels;
  const size_t depth = (size_t)conv->in_channels * conv->kernel * conv->kernel;
  const size_t plane = (size_t)oh * ow, total = (size_t)n * plane;
  /* A 1x1 stride-1 convolution's columns are the input itself when the
   * images of each channel row are contiguous. */
  const bool direct = conv->kernel == 1 && conv->stride == 1 && conv->pad == 0 &&
                      (n == 1 || istride == plane);
  const size_t block = block_columns(depth, total);

  size_t mark = grad__ws_mark(ws);
  float *columns = NULL;
  if (!direct) {
    columns = grad__ws_floats(ws, depth * block);
    if (!columns) return GRAD_E_NOMEM;
  }
  grad_status memory = grad__blas_memory_check("convolution");
  if (memory != GRAD_OK) {
    grad__ws_release(ws, mark);
    return memory;
  }
  block_job job = {conv, x, bias, residual, cstride, istride, 0, 0, total, depth, h, w, relu,
                   columns, y};
  for (size_t first = 0; first < total; first += block) {
    job.first = first;
    job.count = total - first < block ? total - first : block;
    const float *b = x + first;
    size_t ldb = cstride;
    if (!direct) {
      grad__parallel(grad__parallel_width(depth * job.count), im2col_part, &job);
      b = columns;
      ldb = job.count;
    }
    grad__sgemm(false, false, cout, (int)job.count, (int)depth, 1.0f, weight, (int)depth, b,
                (int)ldb, 0.0f, y + first, (int)total, grad__threads(ws));
    grad__parallel(grad__parallel_width((size_t)cout * job.count), epilogue_part, &job);
  }
  grad__ws_release(ws, mark);
  return GRAD_OK;
}

grad_status grad__conv2d(const grad__conv *conv, const float *weight, const float *bias,
                         bool relu, const float *x, int n, int h, int w, float *y,
                         grad_workspace *ws) {
  const size_t in_image = (size_t)conv->in_channels * h * w;
  const size_t out_image = (size_t)conv->out_channels * grad__conv_out_size(conv, h) *
                           grad__conv_out_size(conv, w);
  /* One image in C,N,H,W order is one image in N,C,H,W order. */
  for (int i = 0; i < n; i++) {
    grad_status st = grad__conv2d_strided(conv, weight, bias, NULL, relu, x + i * in_image,
                                          (size_t)h * w, 0, 1, h, w, y + i * out_image, ws);
    if (st != GRAD_OK) return st;
  }
  return GRAD_OK;
}
