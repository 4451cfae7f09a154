/*
 * Resizing (docs/method.md section 1) and the network input tensor.
 *
 * The bilinear filter reproduces PIL's Image.resize(..., BILINEAR) (Pillow's
 * Resample.c) operation for operation, so that results are equal to the
 * reference pipeline byte for byte: a separable triangle filter whose
 * support widens by the scale factor when shrinking (antialiasing); taps
 * centred at (i + 0.5) * scale; weights normalised to sum 1 per output
 * sample; for 8-bit data the weights are rounded to 22-bit fixed point and
 * each pass rounds and clips to 8 bits; the horizontal pass runs first, on
 * only the rows the vertical pass reads; an axis whose size does not change
 * is not resampled at all.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "image_internal.h"
#include "isa_internal.h" /* AVX512_TARGET, AVX2_TARGET */
#include "resize_internal.h"
#include "threading.h" /* grad__cpu_isa */

#define FIXED_BITS GRAD_RESIZE_FIXED_BITS

/* The filter weights of one axis. */
typedef struct axis {
  int ksize;     /* taps stored per output sample */
  int *bounds;   /* per output sample: first input index, number of taps */
  double *kd;    /* normalised weights, out_size * ksize */
  int32_t *kf;   /* the same in fixed point, for 8-bit data (or NULL) */
} axis;

static void axis_free(axis *a) {
  grad__free(a->bounds);
  grad__free(a->kd);
  grad__free(a->kf);
  memset(a, 0, sizeof *a);
}

static double triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

static grad_status axis_init(axis *a, int in_size, int out_size, bool fixed) {
  memset(a, 0, sizeof *a);
  double scale = (double)in_size / out_size;
  double filter_scale = scale < 1.0 ? 1.0 : scale;
  double support = 1.0 * filter_scale; /* the triangle's support is 1 */
  double inv = 1.0 / filter_scale;
  int ksize = (int)ceil(support) * 2 + 1;
  size_t count = (size_t)out_size * (size_t)ksize;
  a->ksize = ksize;
  a->bounds = grad__malloc_array((size_t)out_size * 2, sizeof *a->bounds);
  a->kd = grad__calloc(count, sizeof *a->kd);
  if (fixed) a->kf = grad__malloc_array(count, sizeof *a->kf);
  if (!a->bounds || !a->kd || (fixed && !a->kf)) {
    axis_free(a);
    return grad__fail(GRAD_E_NOMEM, "resize: out of memory for %zu filter weights", count);
  }
  for (int o = 0; o < out_size; o++) {
    double center = (o + 0.5) * scale;
    int lo = (int)(center - support + 0.5); /* truncation, as PIL rounds */
    if (lo < 0) lo = 0;
    int hi = (int)(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    int taps = hi - lo;
    double *k = a->kd + (size_t)o * ksize;
    double sum = 0.0;
    for (int t = 0; t < taps; t++) {
      k[t] = triangle((t + lo - center + 0.5) * inv);
      sum += k[t];
    }
    if (sum != 0.0)
      for (int t = 0; t < taps; t++) k[t] /= sum;
    a->bounds[2 * o] = lo;
    a->bounds[2 * o + 1] = taps;
    if (fixed)
      for (int t = 0; t < ksize; t++) /* the weights are never negative */
        a->kf[(size_t)o * ksize + t] = (int32_t)(0.5 + k[t] * (1 << FIXED_BITS));
  }
  return GRAD_OK;
}

static inline uint8_t clip_fixed(int32_t v) {
  v >>= FIXED_BITS;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static atomic_int isa_cap = GRAD__ISA_AVX512;

grad__isa grad__resize_isa_cap(grad__isa cap) { return (grad__isa)atomic_exchange(&isa_cap, cap); }

/* The instruction set the passes' builds may use: the CPU's, up to the cap. */
static grad__isa vector_isa(void) {
  grad__isa cpu = grad__cpu_isa(), cap = (grad__isa)atomic_load(&isa_cap);
  return cpu < cap ? cpu : cap;
}

/* Rows [0, rows) of in (in_w pixels of ch bytes) to out_w pixels: with
 * AVX-512 VBMI where the CPU has it (resize_vbmi.c), else portably. (An AVX2
 * build with gathers was no faster on RGB on Zen 4.) */
static void horizontal_u8(const void *in_samples, int in_w, int ch, int rows, void *out_samples,
                          int out_w, const axis *a) {
  const uint8_t *in = in_samples;
  uint8_t *out = out_samples;
  if (vector_isa() >= GRAD__ISA_AVX512 &&
      grad__resize_rows_u8_vbmi(in, in_w, ch, rows, out, out_w, a->bounds, a->kf, a->ksize))
    return;
  for (int y = 0; y < rows; y++) {
    const uint8_t *src = in + (size_t)y * in_w * ch;
    uint8_t *dst = out + (size_t)y * out_w * ch;
    for (int o = 0; o < out_w; o++) {
      const int32_t *k = a->kf + (size_t)o * a->ksize;
      const uint8_t *s = src + (size_t)a->bounds[2 * o] * ch;
      int taps = a->bounds[2 * o + 1];
      if (ch == 3) { /* one pass over the taps for the three channels */
        int32_t r = 1 << (FIXED_BITS - 1), g = r, b = r;
        for (int t = 0; t < taps; t++) {
          r += s[3 * t] * k[t];
          g += s[3 * t + 1] * k[t];
          b += s[3 * t + 2] * k[t];
        }
        dst[3 * o] = clip_fixed(r);
        dst[3 * o + 1] = clip_fixed(g);
        dst[3 * o + 2] = clip_fixed(b);
        continue;
      }
      for (int c = 0; c < ch; c++) {
        int32_t acc = 1 << (FIXED_BITS - 1);
        for (int t = 0; t < taps; t++) acc += s[t * ch + c] * k[t];
        dst[o * ch + c] = clip_fixed(acc);
      }
    }
  }
}

/* Output row o reads rows bounds[2o] - first ... of in, a row of n bytes.
 * Integer sums do not depend on their order, so rows are accumulated
 * whole into acc (n ints). */
INLINE void vertical_u8_body(const void *in_samples, int first, size_t n, void *out_samples,
                             int out_h, const axis *a, void *acc_row) {
  const uint8_t *in = in_samples;
  uint8_t *out = out_samples;
  int32_t *acc = acc_row;
  for (int o = 0; o < out_h; o++) {
    const int32_t *k = a->kf + (size_t)o * a->ksize;
    const uint8_t *src = in + (size_t)(a->bounds[2 * o] - first) * n;
    int taps = a->bounds[2 * o + 1];
    for (size_t i = 0; i < n; i++) acc[i] = 1 << (FIXED_BITS - 1);
    for (int t = 0; t < taps; t++) {
      const uint8_t *row = src + (size_t)t * n;
      int32_t w = k[t];
      for (size_t i = 0; i < n; i++) acc[i] += row[i] * w;
    }
    uint8_t *dst = out + (size_t)o * n;
    for (size_t i = 0; i < n; i++) dst[i] = clip_fixed(acc[i]);
  }
}

/*
 * PIL's BILINEAR resize of a mode "F" image: double weights and sums, the
 * intermediate rows stored as float. The per-sample order of the additions
 * is PIL's, so results agree to the last bit.
 */
static void horizontal_f32(const void *in_samples, int in_w, int ch, int rows,
                           void *out_samples, int out_w, const axis *a) {
  (void)ch; /* planes have one channel */
  const float *in = in_samples;
  float *out = out_samples;
  for (int y = 0; y < rows; y++) {
    const float *row = in + (size_t)y * in_w;
    float *dst = out + (size_t)y * out_w;
    for (int o = 0; o < out_w; o++) {
      const double *k = a->kd + (size_t)o * a->ksize;
      const float *r = row + a->bounds[2 * o];
      int taps = a->bounds[2 * o + 1];
      double sum = 0.0;
      for (int t = 0; t < taps; t++) sum += r[t] * k[t];
      dst[o] = (float)sum;
    }
  }
}

INLINE void vertical_f32_body(const void *in_samples, int first, size_t n, void *out_samples,
                              int out_h, const axis *a, void *acc_row) {
  const float *in = in_samples;
  float *out = out_samples;
  double *acc = acc_row;
  for (int o = 0; o < out_h; o++) {
    const double *k = a->kd + (size_t)o * a->ksize;
    const float *rows = in + (size_t)(a->bounds[2 * o] - first) * n;
    int taps = a->bounds[2 * o + 1];
    for (size_t i = 0; i < n; i++) acc[i] = 0.0;
    for (int t = 0; t < taps; t++)
      for (size_t i = 0; i < n; i++) acc[i] += rows[(size_t)t * n + i] * k[t];
    for (size_t i = 0; i < n; i++) out[(size_t)o * n + i] = (float)acc[i];
  }
}

/*
 * The vertical passes in three builds of one body: portable, and for AVX2
 * and AVX-512, where GCC vectorises the loops along the row (32-bit integer
 * products; float to double products and sums). Each sample gets the same
 * operations in the same order in every build, so the same result. The
 * build follows the CPU's features.
 */
#define VERTICAL_PARAMS \
  const void *in, int first, size_t n, void *out, int out_h, const axis *a, void *acc
#define VERTICAL_ARGS in, first, n, out, out_h, a, acc
#ifdef HAVE_X86_BUILDS
#define VERTICAL_PASS(name)                                                                \
  AVX512_TARGET static void name##_avx512(VERTICAL_PARAMS) { name##_body(VERTICAL_ARGS); } \
  AVX2_TARGET static void name##_avx2(VERTICAL_PARAMS) { name##_body(VERTICAL_ARGS); }     \
  static void name(VERTICAL_PARAMS) {                                                      \
    grad__isa isa = vector_isa();                                                          \
    if (isa >= GRAD__ISA_AVX512)                                                           \
      name##_avx512(VERTICAL_ARGS);                                                        \
    else if (isa >= GRAD__ISA_AVX2)                                                        \
      name##_avx2(VERTICAL_ARGS);                                                          \
    else                                                                                   \
      name##_body(VERTICAL_ARGS);                                                          \
  }
#else
#define VERTICAL_PASS(name) \
  static void name(VERTICAL_PARAMS) { name##_body(VERTICAL_ARGS); }
#endif
VERTICAL_PASS(vertical_u8)
VERTICAL_PASS(vertical_f32)

/* The two sample types the separable resize runs on: 8-bit pixels with
 * fixed-point weights, and float planes with double weights. */
typedef struct sample_kind {
  size_t bytes;      /* of one sample */
  size_t acc_bytes;  /* of one accumulator of the vertical pass */
  bool fixed;        /* fixed-point weights (axis.kf) */
  void (*horizontal)(const void *in, int in_w, int ch, int rows, void *out, int out_w,
                     const axis *a);
  void (*vertical)(const void *in, int first, size_t n, void *out, int out_h, const axis *a,
                   void *acc);
} sample_kind;

static const sample_kind kind_u8 = {1, sizeof(int32_t), true, horizontal_u8, vertical_u8};
static const sample_kind kind_f32 = {sizeof(float), sizeof(double), false, horizontal_f32,
                                     vertical_f32};

/*
 * PIL's BILINEAR resize, separable as PIL does it: a horizontal pass over
 * only the input rows the vertical pass will read, into a temporary buffer,
 * then the vertical pass. Interleaved samples of ch channels; out holds
 * out_w x out_h of them. One driver for both sample kinds.
 */
static grad_status resample(const sample_kind *kind, const void *in, int in_w, int in_h, int ch,
                            void *out, int out_w, int out_h) {
  bool need_h = out_w != in_w, need_v = out_h != in_h;
  if (!need_h && !need_v) {
    memcpy(out, in, (size_t)in_w * in_h * ch * kind->bytes);
    return GRAD_OK;
  }
  axis h = {0}, v = {0};
  unsigned char *temp = NULL;
  void *acc = NULL;
  grad_status s = GRAD_OK;
  int first = 0, last = in_h;
  if (need_v) {
    s = axis_init(&v, in_h, out_h, kind->fixed);
    if (s != GRAD_OK) goto done;
    first = v.bounds[0];
    last = v.bounds[2 * out_h - 2] + v.bounds[2 * out_h - 1];
  }
  const void *src = in;
  int src_first = 0;
  if (need_h) {
    s = axis_init(&h, in_w, out_w, kind->fixed);
    if (s != GRAD_OK) goto done;
    void *target = out;
    if (need_v) {
      temp = grad__malloc_array((size_t)(last - first) * (size_t)out_w * ch, kind->bytes);
      if (!temp) {
        s = grad__fail(GRAD_E_NOMEM, "resize: out of memory for a %d x %d buffer", out_w,
                       last - first);
        goto done;
      }
      target = temp;
    }
    kind->horizontal((const unsigned char *)in + (size_t)first * in_w * ch * kind->bytes, in_w,
                     ch, last - first, target, out_w, &h);
    src = target;
    src_first = first;
  }
  if (need_v) {
    size_t n = (size_t)out_w * ch; /* out_w == in_w when there was no horizontal pass */
    acc = grad__malloc_array(n, kind->acc_bytes);
    if (!acc) {
      s = grad__fail(GRAD_E_NOMEM, "resize: out of memory for a row of %zu samples", n);
      goto done;
    }
    kind->vertical(src, src_first, n, out, out_h, &v, acc);
  }
done:
  axis_free(&h);
  axis_free(&v);
  grad__free(temp);
  grad__free(acc);
  return s;
}

/*
 * PIL's NEAREST resize (an affine scale in Geometry.c): source positions
 * advance by repeated addition of the scale, starting half a step in, and
 * are truncated; replicating the accumulation keeps ties identical. Rows
 * that read the same source row as the one before are copied from it
 * (enlarging a mask to an image's size repeats most rows).
 */
static grad_status resample_nearest(const uint8_t *in, int in_w, int in_h, int ch, uint8_t *out,
                                    int out_w, int out_h) {
  int *xs = grad__malloc_array((size_t)out_w, sizeof *xs);
  if (!xs) return grad__fail(GRAD_E_NOMEM, "resize: out of memory for %d columns", out_w);
  double sx = (double)in_w / out_w, sy = (double)in_h / out_h;
  double pos = sx * 0.5;
  for (int x = 0; x < out_w; x++, pos += sx) xs[x] = pos < 0.0 || (int)pos >= in_w ? -1 : (int)pos;
  const size_t row = (size_t)out_w * ch;
  pos = sy * 0.5;
  int last = -2; /* the source row of the row before (none yet) */
  for (int y = 0; y < out_h; y++, pos += sy) {
    int yi = pos < 0.0 || (int)pos >= in_h ? -1 : (int)pos;
    uint8_t *dst = out + (size_t)y * row;
    if (yi == last) {
      memcpy(dst, dst - row, row);
      continue;
    }
    last = yi;
    if (yi < 0) { /* PIL fills outside samples with 0 */
      memset(dst, 0, row);
      continue;
    }
    const uint8_t *src = in + (size_t)yi * in_w * ch;
    for (int x = 0; x < out_w; x++)
      for (int k = 0; k < ch; k++) dst[x * ch + k] = xs[x] < 0 ? 0 : src[(size_t)xs[x] * ch + k];
  }
  grad__free(xs);
  return GRAD_OK;
}

static grad_status check_target(const char *call, int width, int height) {
  if (width <= 0 || height <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: target size %d x %d is not positive", call, width,
                      height);
  return grad__image_check_size(call, (uint64_t)width, (uint64_t)height);
}

grad_status grad_image_resize(const grad_image *image, int width, int height,
                              grad_resize_filter filter, grad_image **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_resize: out is NULL");
  *out = NULL;
  if (!image) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_resize: image is NULL");
  if (filter != GRAD_RESIZE_BILINEAR && filter != GRAD_RESIZE_NEAREST)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_image_resize: unknown filter %d", (int)filter);
  grad_status s = check_target("grad_image_resize", width, height);
  if (s != GRAD_OK) return s;
  grad_image *result;
  s = grad__image_new("grad_image_resize", width, height, image->channels, &result);
  if (s != GRAD_OK) return s;
  if (filter == GRAD_RESIZE_NEAREST)
    s = resample_nearest(image->pixels, image->width, image->height, image->channels,
                         result->pixels, width, height);
  else
    s = resample(&kind_u8, image->pixels, image->width, image->height, image->channels,
                 result->pixels, width, height);
  if (s != GRAD_OK) {
    grad_image_free(result);
    return s;
  }
  *out = result;
  return GRAD_OK;
}

grad_status grad_plane_resize(const float *in, int in_w, int in_h, float *out, int out_w,
                              int out_h) {
  if (!in || !out) return grad__fail(GRAD_E_INVALID_ARG, "grad_plane_resize: NULL plane");
  if (in_w <= 0 || in_h <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_plane_resize: input size %d x %d is not positive",
                      in_w, in_h);
  grad_status s = grad__image_check_size("grad_plane_resize", (uint64_t)in_w, (uint64_t)in_h);
  if (s != GRAD_OK) return s;
  s = check_target("grad_plane_resize", out_w, out_h);
  if (s != GRAD_OK) return s;
  return resample(&kind_f32, in, in_w, in_h, 1, out, out_w, out_h);
}

grad_status grad_image_to_tensor(const grad_image *image, int size, float *out) {
  if (!image || !out)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_image_to_tensor: %s is NULL",
                      image ? "out" : "image");
  grad_status s = check_target("grad_image_to_tensor", size, size);
  if (s != GRAD_OK) return s;
  int ch = image->channels;
  size_t plane = (size_t)size * size;
  uint8_t *resized = grad__malloc_array(plane, (size_t)ch);
  if (!resized)
    return grad__fail(GRAD_E_NOMEM, "grad_image_to_tensor: out of memory for %d x %d pixels",
                      size, size);
  s = resample(&kind_u8, image->pixels, image->width, image->height, ch, resized, size, size);
  if (s != GRAD_OK) {
    grad__free(resized);
    return s;
  }
  /* torchvision's ToTensor (v / 255) then Normalize ((x - mean) / std), in
   * float32 as torch computes them, tabulated per channel and level. */
  static const float mean[3] = {0.485f, 0.456f, 0.406f};
  static const float std[3] = {0.229f, 0.224f, 0.225f};
  float table[3][256];
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) table[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
  for (int c = 0; c < 3; c++) {
    const uint8_t *src = resized + (ch == 3 ? c : 0);
    float *dst = out + (size_t)c * plane;
    for (size_t i = 0; i < plane; i++) dst[i] = table[c][src[i * ch]];
  }
  grad__free(resized);
  return GRAD_OK;
}
