/*
 * The horizontal 8-bit pass of the bilinear resize (image_resize.c) with
 * AVX-512 VBMI (Intel Ice Lake, AMD Zen 4 and later), chosen at run time:
 * the same integer sums as the portable pass, so the same bytes.
 *
 * A vector holds the 32-bit sums of up to 16 consecutive output samples
 * (pixel, channel) of a row. Their taps lie in a window of at most 128 input
 * bytes, loaded into two registers with masks that stop at the last byte the
 * taps read, so nothing past the row is touched. For each tap a byte
 * permutation (vpermt2b) hands every lane its input sample, which is
 * multiplied by the lane's 22-bit weight in 32-bit integers: exact, as the
 * portable pass is (255 times weights summing to about 2^22 is far below
 * 2^31). Windows, permutations and weights are the same for every row, so
 * they are laid out once per call.
 */
#include "resize_internal.h"

#include <limits.h>

#include "core.h" /* grad__calloc */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define WINDOW 128 /* bytes: vpermt2b's two-register table */
#define LANES 16   /* 32-bit sums in a register */

/* Output samples [first, first + lanes) of every row, read from the window
 * of bytes [base, base + 128) of the row. */
typedef struct block {
  int first, lanes;
  int base;
  int taps;                  /* the most taps of any lane */
  uint64_t mask_lo, mask_hi; /* the window's bytes that taps read */
} block;

typedef struct plan {
  int count;
  block *blocks;
  int32_t *weight; /* per block and tap: LANES weights, 0 past a lane's taps */
  uint8_t *index;  /* per block and tap: 64 bytes, lane l's window byte at 4l */
} plan;

/* The first byte of its row that output sample j (pixel j / ch, channel
 * j % ch) reads, and its number of taps. */
static int sample_start(int j, int ch, const int *bounds, int *taps) {
  int o = j / ch;
  *taps = bounds[2 * o + 1];
  return bounds[2 * o] * ch + j % ch;
}

/* How many samples from j on share one window (at most LANES; 0 when sample
 * j alone spans more), with the window's first and last byte read. */
static int block_lanes(int j, int samples, int ch, const int *bounds, int *lo, int *hi) {
  int n = 0;
  *lo = INT_MAX, *hi = -1;
  for (; n < LANES && j + n < samples; n++) {
    int taps, start = sample_start(j + n, ch, bounds, &taps);
    int end = start + (taps > 0 ? taps - 1 : 0) * ch;
    int new_lo = start < *lo ? start : *lo, new_hi = end > *hi ? end : *hi;
    if (new_hi - new_lo + 1 > WINDOW) break;
    *lo = new_lo, *hi = new_hi;
  }
  return n;
}

static uint64_t low_bits(int n) { return n <= 0 ? 0 : n >= 64 ? ~0ull : (1ull << n) - 1; }

/* False when a sample spans more than a window, or out of memory. */
static bool plan_make(plan *p, int ch, int out_w, const int *bounds, const int32_t *weights,
                      int ksize) {
  const int samples = out_w * ch;
  int lo, hi, n;
  p->count = 0;
  for (int j = 0; j < samples; j += n, p->count++)
    if ((n = block_lanes(j, samples, ch, bounds, &lo, &hi)) == 0) return false;
  size_t steps = (size_t)p->count * (size_t)ksize;
  p->blocks = grad__calloc((size_t)p->count, sizeof *p->blocks);
  p->weight = grad__calloc(steps * LANES, sizeof *p->weight);
  p->index = grad__calloc(steps, 64);
  if (!p->blocks || !p->weight || !p->index) return false;
  for (int b = 0, j = 0; b < p->count; b++, j += n) {
    block *bk = &p->blocks[b];
    n = block_lanes(j, samples, ch, bounds, &lo, &hi);
    *bk = (block){.first = j, .lanes = n, .base = lo, .taps = 0};
    bk->mask_lo = low_bits(hi - lo + 1);
    bk->mask_hi = low_bits(hi - lo + 1 - 64);
    for (int l = 0; l < n; l++) {
      int taps, start = sample_start(j + l, ch, bounds, &taps);
      const int32_t *k = weights + (size_t)((j + l) / ch) * ksize;
      if (taps > bk->taps) bk->taps = taps;
      for (int t = 0; t < taps; t++) {
        size_t step = (size_t)b * ksize + t;
        p->weight[step * LANES + l] = k[t];
        p->index[step * 64 + 4 * l] = (uint8_t)(start + t * ch - lo);
      }
    }
  }
  return true;
}

static void plan_free(plan *p) {
  grad__free(p->blocks);
  grad__free(p->weight);
  grad__free(p->index);
}

__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void
run_rows(const plan *p, int ksize, const uint8_t *in, size_t in_row, int rows, uint8_t *out,
         size_t out_row) {
  const __m512i half = _mm512_set1_epi32(1 << (GRAD_RESIZE_FIXED_BITS - 1));
  const __mmask64 low_byte_of_lanes = 0x1111111111111111ull;
  for (int y = 0; y < rows; y++) {
    const uint8_t *src = in + (size_t)y * in_row;
    uint8_t *dst = out + (size_t)y * out_row;
    for (int b = 0; b < p->count; b++) {
      const block *bk = &p->blocks[b];
      const uint8_t *window = src + bk->base;
      __m512i lo = _mm512_maskz_loadu_epi8(bk->mask_lo, window);
      __m512i hi = bk->mask_hi ? _mm512_maskz_loadu_epi8(bk->mask_hi, window + 64)
                               : _mm512_setzero_si512();
      const uint8_t *index = p->index + (size_t)b * ksize * 64;
      const int32_t *weight = p->weight + (size_t)b * ksize * LANES;
      __m512i acc = half;
      for (int t = 0; t < bk->taps; t++) {
        __m512i at = _mm512_loadu_si512(index + (size_t)t * 64);
        __m512i px = _mm512_maskz_permutex2var_epi8(low_byte_of_lanes, lo, at, hi);
        __m512i w = _mm512_loadu_si512(weight + (size_t)t * LANES);
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(px, w));
      }
      /* The portable pass's clip_fixed: shift, then clamp to 0..255. */
      acc = _mm512_max_epi32(_mm512_srai_epi32(acc, GRAD_RESIZE_FIXED_BITS),
                             _mm512_setzero_si512());
      _mm512_mask_cvtusepi32_storeu_epi8(dst + bk->first, (__mmask16)((1u << bk->lanes) - 1),
                                         acc);
    }
  }
}

static bool cpu_has_vbmi(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vbmi");
}

bool grad__resize_rows_u8_vbmi(const uint8_t *in, int in_w, int ch, int rows, uint8_t *out,
                               int out_w, const int *bounds, const int32_t *weights, int ksize) {
  if (!cpu_has_vbmi()) return false;
  plan p = {0};
  bool ok = plan_make(&p, ch, out_w, bounds, weights, ksize);
  if (ok) run_rows(&p, ksize, in, (size_t)in_w * ch, rows, out, (size_t)out_w * ch);
  plan_free(&p);
  return ok;
}

#else /* no x86-64 vector build */

bool grad__resize_rows_u8_vbmi(const uint8_t *in, int in_w, int ch, int rows, uint8_t *out,
                               int out_w, const int *bounds, const int32_t *weights, int ksize) {
  (void)in, (void)in_w, (void)ch, (void)rows, (void)out, (void)out_w, (void)bounds;
  (void)weights, (void)ksize;
  return false;
}

#endif
