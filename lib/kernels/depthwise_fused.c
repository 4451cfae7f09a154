/*
 * Depthwise convolution + bias + swish, and the bias/residual/swish
 * epilogue, in three builds of one C body (see depthwise_fused.h). The bodies are
 * always-inline functions written so GCC vectorises them: inlined into a
 * function compiled for AVX-512 or AVX2 they become that ISA's code.
 */
#include "depthwise_fused.h"
#include "isa_internal.h"

#include <grad/common.h> /* grad_kernels_isa */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "threading.h" /* grad__cpu_isa */

/*
 * exp(t) for t in [-87, 87] without branches or calls (Cephes' expf
 * polynomial after reducing by ln 2; relative error about 2e-7), so that
 * loops calling it vectorise.
 */
INLINE float exp_poly(float t) {
  t = t < -87.0f ? -87.0f : t > 87.0f ? 87.0f : t;
  float n = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(t / ln 2) */
  float r = t - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* 2^n */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

INLINE float swish(float v) { return v / (1.0f + exp_poly(-v)); }

/* tanh(v) without branches or calls: Cephes' tanhf, an odd polynomial below
 * |v| = 0.625 and 1 - 2 / (exp(2|v|) + 1) above it (relative error about
 * 3e-7 against tanhf; NaN stays NaN). */
INLINE float tanh_poly(float v) {
  const float a = v < 0.0f ? -v : v, z = v * v;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * v + v;
  float big = 1.0f - 2.0f / (exp_poly(2.0f * a) + 1.0f);
  big = v < 0.0f ? -big : big;
  return a < 0.625f ? small : big;
}

/* Sum of n floats in 16 lanes (a form the vectoriser takes without
 * reassociating a scalar sum). */
INLINE float sum_row(const float *v, int n) {
  float lane[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) lane[j] += v[i + j];
  float s = 0.0f;
  for (; i < n; i++) s += v[i];
  for (int j = 0; j < 16; j++) s += lane[j];
  return s;
}

/* First and one-past-last ox whose input column ox * stride + kx - pad_left
 * lies in [0, w), for every kx (computed once per call, not per row). */
static inline void valid_columns(const grad__dw_shape *s, int *ox0, int *ox1) {
  for (int kx = 0; kx < s->kernel; kx++) {
    int lo = s->pad_left - kx; /* need ox * stride >= lo */
    int a = lo <= 0 ? 0 : (lo + s->stride - 1) / s->stride;
    int hi = s->w - 1 + s->pad_left - kx; /* need ox * stride <= hi */
    int b = hi < 0 ? 0 : hi / s->stride + 1;
    ox0[kx] = a;
    ox1[kx] = b < s->ow ? (b > a ? b : a) : s->ow;
  }
}

/* Swish on each output row, and the plane's sum. */
INLINE float activate_rows(float *yc, int oh, int ow, int want_sum) {
  float total = 0.0f;
  for (int oy = 0; oy < oh; oy++) {
    float *row = yc + (size_t)oy * ow;
    for (int ox = 0; ox < ow; ox++) row[ox] = swish(row[ox]);
    if (want_sum) total += sum_row(row, ow);
  }
  return total;
}

/* Very wide planes (a padded row beyond what the band buffers hold): per
 * output row, the bias, then one multiply-add sweep per tap over the
 * columns where the tap reads inside the image. */
INLINE void plane_rows(const grad__dw_shape *s, const float *xc, const float *wc, float b,
                       const int *ox0, const int *ox1, float *yc) {
  const int k = s->kernel, st = s->stride, ow = s->ow;
  for (int oy = 0; oy < s->oh; oy++) {
    float *row = yc + (size_t)oy * ow;
    for (int ox = 0; ox < ow; ox++) row[ox] = b;
    for (int ky = 0; ky < k; ky++) {
      int iy = oy * st + ky - s->pad_top;
      if (iy < 0 || iy >= s->h) continue;
      const float *in = xc + (size_t)iy * s->w;
      for (int kx = 0; kx < k; kx++) {
        const float wv = wc[ky * k + kx];
        const float *restrict src = in + kx - s->pad_left;
        float *restrict out = row; /* the plane y never overlaps x */
        const int a = ox0[kx], e = ox1[kx];
        if (st == 1)
          for (int ox = a; ox < e; ox++) out[ox] += wv * src[ox];
        else if (st == 2)
          for (int ox = a; ox < e; ox++) out[ox] += wv * src[2 * ox];
        else
          for (int ox = a; ox < e; ox++) out[ox] += wv * src[ox * st];
      }
    }
  }
}

/*
 * The main path ("flat"): a band of R output rows at a time, its input rows
 * copied into a zero-padded buffer of width W = w + pad_left + k, and
 * output (oy, ox) computed at flat index i = oy * W + ox of the band as
 * bias + sum over taps of w[ky][kx] * pad[stride * i + ky * W + kx]: full
 * vectors whatever the row width (EfficientNet's maps are 7 to 112 wide),
 * all taps of an output in registers (one store per output, not one per
 * tap), no bounds tests. The columns ox >= ow of the band are computed and
 * dropped: about W / ow times the work, which the vectors pay for. Swish is
 * applied in the same loop.
 */
enum { PAD_MAX = 8192, ACC_MAX = 4096 };

/* Output rows per band, or 0 when even one row does not fit (very wide
 * planes: the row path). */
INLINE int band_rows(const grad__dw_shape *s) {
  const int pw = s->w + s->pad_left + s->kernel;
  int r = (PAD_MAX / pw - s->kernel) / s->stride;
  if (r > ACC_MAX / pw) r = ACC_MAX / pw;
  if (r > s->oh) r = s->oh;
  return r < 1 ? 0 : r;
}

/* acc[i] = swish(b + taps) for i in [0, n); K and ST constant when inlined
 * from the specialisations, so the tap loops unroll. */
INLINE void band_taps(const float *restrict pad, int pw, const float *wc, float b, int n, int K,
                      int ST, float *restrict acc) {
  float w[GRAD__DW_MAX_KERNEL * GRAD__DW_MAX_KERNEL];
  for (int t = 0; t < K * K; t++) w[t] = wc[t];
  for (int i = 0; i < n; i++) {
    float a = b;
    for (int ky = 0; ky < K; ky++)
      for (int kx = 0; kx < K; kx++) a += w[ky * K + kx] * pad[ST * i + ky * pw + kx];
    acc[i] = swish(a);
  }
}

INLINE void plane_bands(const grad__dw_shape *s, int rows, const float *xc, const float *wc,
                        float b, float *pad, float *acc, float *yc) {
  const int k = s->kernel, st = s->stride;
  const int pw = s->w + s->pad_left + k;
  for (int oy0 = 0; oy0 < s->oh; oy0 += rows) {
    const int r = s->oh - oy0 < rows ? s->oh - oy0 : rows;
    const int ph = st * r + k, n = r * pw;
    memset(pad, 0, sizeof(float) * (size_t)pw * ph);
    for (int py = 0; py < ph; py++) {
      int iy = st * oy0 - s->pad_top + py;
      if (iy >= 0 && iy < s->h)
        memcpy(pad + (size_t)py * pw + s->pad_left, xc + (size_t)iy * s->w,
               sizeof(float) * s->w);
    }
    if (k == 3 && st == 1) band_taps(pad, pw, wc, b, n, 3, 1, acc);
    else if (k == 3 && st == 2) band_taps(pad, pw, wc, b, n, 3, 2, acc);
    else if (k == 5 && st == 1) band_taps(pad, pw, wc, b, n, 5, 1, acc);
    else if (k == 5 && st == 2) band_taps(pad, pw, wc, b, n, 5, 2, acc);
    else band_taps(pad, pw, wc, b, n, k, st, acc);
    for (int oy = 0; oy < r; oy++)
      memcpy(yc + (size_t)(oy0 + oy) * s->ow, acc + (size_t)oy * pw, sizeof(float) * s->ow);
  }
}

INLINE void depthwise_body(const grad__dw_shape *s, const float *x, const float *weight,
                           const float *bias, int c0, int c1, float *y, float *sums) {
  const int k = s->kernel;
  const size_t in_plane = (size_t)s->h * s->w, out_plane = (size_t)s->oh * s->ow;
  const int rows = band_rows(s);
  int ox0[GRAD__DW_MAX_KERNEL], ox1[GRAD__DW_MAX_KERNEL];
  float pad[PAD_MAX], acc[ACC_MAX]; /* 48 KB of stack */
  if (!rows) valid_columns(s, ox0, ox1);
  for (int c = c0; c < c1; c++) {
    const float *xc = x + c * in_plane, *wc = weight + (size_t)c * k * k;
    float *yc = y + c * out_plane;
    float total = 0.0f;
    if (rows) {
      plane_bands(s, rows, xc, wc, bias[c], pad, acc, yc);
      if (sums)
        for (int oy = 0; oy < s->oh; oy++) total += sum_row(yc + (size_t)oy * s->ow, s->ow);
    } else {
      plane_rows(s, xc, wc, bias[c], ox0, ox1, yc);
      total = activate_rows(yc, s->oh, s->ow, sums != NULL);
    }
    if (sums) sums[c] = total;
  }
}

INLINE void bias_act_body(float *y, size_t ld, size_t cols, int r0, int r1, const float *bias,
                          const float *residual, int act) {
  for (int r = r0; r < r1; r++) {
    float *row = y + (size_t)r * ld;
    const float b = bias[r];
    if (residual) {
      const float *res = residual + (size_t)r * ld;
      for (size_t i = 0; i < cols; i++) row[i] += b + res[i];
    } else {
      for (size_t i = 0; i < cols; i++) row[i] += b;
    }
    if (act)
      for (size_t i = 0; i < cols; i++) row[i] = swish(row[i]);
  }
}

#ifdef HAVE_X86_BUILDS
AVX512_TARGET static void depthwise_avx512(const grad__dw_shape *s, const float *x,
                                           const float *w, const float *b, int c0, int c1,
                                           float *y, float *sums) {
  depthwise_body(s, x, w, b, c0, c1, y, sums);
}
AVX2_TARGET static void depthwise_avx2(const grad__dw_shape *s, const float *x, const float *w,
                                       const float *b, int c0, int c1, float *y, float *sums) {
  depthwise_body(s, x, w, b, c0, c1, y, sums);
}
AVX512_TARGET static void bias_act_avx512(float *y, size_t ld, size_t cols, int r0, int r1,
                                          const float *bias, const float *residual, int act) {
  bias_act_body(y, ld, cols, r0, r1, bias, residual, act);
}
AVX2_TARGET static void bias_act_avx2(float *y, size_t ld, size_t cols, int r0, int r1,
                                      const float *bias, const float *residual, int act) {
  bias_act_body(y, ld, cols, r0, r1, bias, residual, act);
}
#endif

static void depthwise_baseline(const grad__dw_shape *s, const float *x, const float *w,
                               const float *b, int c0, int c1, float *y, float *sums) {
  depthwise_body(s, x, w, b, c0, c1, y, sums);
}
static void bias_act_baseline(float *y, size_t ld, size_t cols, int r0, int r1,
                              const float *bias, const float *residual, int act) {
  bias_act_body(y, ld, cols, r0, r1, bias, residual, act);
}

typedef void (*depthwise_fn)(const grad__dw_shape *, const float *, const float *,
                             const float *, int, int, float *, float *);
typedef void (*bias_act_fn)(float *, size_t, size_t, int, int, const float *, const float *,
                            int);

typedef struct isa_build {
  const char *name;
  depthwise_fn depthwise;
  bias_act_fn bias_act;
} isa_build;

static const isa_build builds[] = {
#ifdef HAVE_X86_BUILDS
  {"avx512", depthwise_avx512, bias_act_avx512},
  {"avx2", depthwise_avx2, bias_act_avx2},
#endif
  {"baseline", depthwise_baseline, bias_act_baseline},
};

static int cpu_has(const char *name) {
#ifdef HAVE_X86_BUILDS
  if (!strcmp(name, "avx512")) return grad__cpu_isa() >= GRAD__ISA_AVX512;
  if (!strcmp(name, "avx2")) return grad__cpu_isa() >= GRAD__ISA_AVX2;
#endif
  return !strcmp(name, "baseline");
}

/* The chosen build; written once (same value from any thread) or by tests. */
static const isa_build *chosen;

static const isa_build *build(void) {
  const isa_build *b = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
  if (b) return b;
  for (size_t i = 0; i < sizeof builds / sizeof builds[0]; i++)
    if (cpu_has(builds[i].name)) {
      b = &builds[i];
      break;
    }
  __atomic_store_n(&chosen, b, __ATOMIC_RELEASE);
  return b;
}

const char *grad_kernels_isa(void) { return build()->name; }

int grad__depthwise_force_isa(const char *isa) {
  if (!isa) {
    __atomic_store_n(&chosen, (const isa_build *)NULL, __ATOMIC_RELEASE);
    return 1;
  }
  for (size_t i = 0; i < sizeof builds / sizeof builds[0]; i++)
    if (!strcmp(builds[i].name, isa) && cpu_has(isa)) {
      __atomic_store_n(&chosen, &builds[i], __ATOMIC_RELEASE);
      return 1;
    }
  return 0;
}

void grad__depthwise_swish(const grad__dw_shape *s, const float *x, const float *weight,
                           const float *bias, int c0, int c1, float *y, float *sums) {
  build()->depthwise(s, x, weight, bias, c0, c1, y, sums);
}

void grad__bias_act_rows(float *y, size_t ld, size_t cols, int r0, int r1, const float *bias,
                         const float *residual, int swish_on) {
  build()->bias_act(y, ld, cols, r0, r1, bias, residual, swish_on);
}

/* ---- Plain definitions (tests) ------------------------------------------- */

static double swish_exact(double v) { return v / (1.0 + exp(-v)); }

void grad__depthwise_swish_reference(const grad__dw_shape *s, const float *x,
                                     const float *weight, const float *bias, int c0, int c1,
                                     float *y, float *sums) {
  const int k = s->kernel;
  for (int c = c0; c < c1; c++) {
    double total = 0.0;
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++) {
        double acc = bias[c];
        for (int ky = 0; ky < k; ky++)
          for (int kx = 0; kx < k; kx++) {
            int iy = oy * s->stride + ky - s->pad_top, ix = ox * s->stride + kx - s->pad_left;
            if (iy >= 0 && iy < s->h && ix >= 0 && ix < s->w)
              acc += (double)weight[((size_t)c * k + ky) * k + kx] *
                     x[((size_t)c * s->h + iy) * s->w + ix];
          }
        float v = (float)swish_exact(acc);
        y[((size_t)c * s->oh + oy) * s->ow + ox] = v;
        total += v;
      }
    if (sums) sums[c] = (float)total;
  }
}

void grad__bias_act_rows_reference(float *y, size_t ld, size_t cols, int r0, int r1,
                                   const float *bias, const float *residual, int swish_on) {
  for (int r = r0; r < r1; r++)
    for (size_t i = 0; i < cols; i++) {
      double v = (double)y[(size_t)r * ld + i] + bias[r];
      if (residual) v += residual[(size_t)r * ld + i];
      y[(size_t)r * ld + i] = (float)(swish_on ? swish_exact(v) : v);
    }
}

typedef struct tanh_job {
  float *v;
  size_t count;
} tanh_job;

INLINE void tanh_body(void *ctx, int part, int parts) {
  const tanh_job *j = ctx;
  const size_t first = j->count * (size_t)part / (size_t)parts,
               end = j->count * (size_t)(part + 1) / (size_t)parts;
  for (size_t i = first; i < end; i++) j->v[i] = tanh_poly(j->v[i]);
}

GRAD_PART_BUILDS(tanh_part, tanh_body)

void grad__tanh_inplace(float *v, size_t count) {
  tanh_job job = {v, count};
  grad__parallel(grad__parallel_width(count), tanh_part_pick(), &job);
}

void grad__tanh_reference(float *v, size_t count) {
  for (size_t i = 0; i < count; i++) v[i] = tanhf(v[i]);
}
