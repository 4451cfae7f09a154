/*
 * Winograd F(2x2, 3x3) in bf16 on AVX512_BF16 (winograd_bf16.h).
 *
 * Notation (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016): output tile Y = A^T [(G g G^T) . (B^T d B)] A, with d
 * a 4x4 input tile, g a 3x3 kernel and 16 positions p = 4 i + j of the
 * transformed tiles. Per position the sum over input channels is a
 * product (tiles x Cin) . (Cin x Cout), so a call is, per block of tiles:
 *
 *   1. the block's input tiles transformed: V[p][tile][Cin], bf16;
 *   2. per 32 output channels, per position, the product into
 *      M[p][tile][32], fp32 (vdpbf16ps: pairs of input channels);
 *   3. those 32 channels transformed back, bias, residual and ReLU applied,
 *      written as bf16.
 *
 * The weights U[p][Cout/32][Cin/2][32][2] are laid out once: a 32-channel
 * column of one position is one contiguous run the product streams. Blocks
 * hold about 256 KiB of V (at least 48 tiles, so the weights, streamed
 * once per block, stay cheap next to the products); the threads (an OpenMP
 * team where the build has OpenMP, as oneDNN's primitives around it) take
 * whole blocks, and a tile's sums do not depend on its block, so outputs
 * are the same for every thread count.
 */
#include "winograd_bf16.h"

#include <string.h>

#include "threading.h"

enum {
  POS = 16,         /* positions of a transformed 4x4 tile */
  KC = 32,          /* output channels per product column */
  NT_MAX = 12,      /* tiles per register block of the product */
  V_TARGET = 256 << 10,
  BLOCK_MIN = 48,
};

typedef struct tiling {
  int tiles_x, tiles;
  int blocks, per_block; /* tiles per block (the last may have fewer) */
  int padded;            /* per_block rounded up to the product's steps of 4 */
} tiling;

static tiling tiling_of(const grad__wino *s, int threads) {
  tiling t;
  t.tiles_x = (s->w + 1) / 2;
  t.tiles = t.tiles_x * ((s->h + 1) / 2);
  int target = V_TARGET / (POS * 2 * s->in_channels);
  if (target < BLOCK_MIN) target = BLOCK_MIN;
  t.blocks = (t.tiles + target - 1) / target;
  if (t.blocks < threads) t.blocks = threads < t.tiles ? threads : t.tiles;
  t.per_block = t.blocks ? (t.tiles + t.blocks - 1) / t.blocks : 0;
  t.padded = (t.per_block + 3) & ~3;
  return t;
}

static size_t v_bytes(const grad__wino *s, const tiling *t) {
  return grad__ws_round((size_t)POS * t->padded * s->in_channels * sizeof(uint16_t));
}

static size_t m_bytes(const tiling *t) {
  return grad__ws_round((size_t)POS * t->padded * KC * sizeof(float));
}

bool grad__wino_bf16_fits(const grad__conv *c) {
  return c->kernel == 3 && c->stride == 1 && c->pad == 1 && c->in_channels % 16 == 0 &&
         c->out_channels % KC == 0;
}

size_t grad__wino_bf16_weight_bytes(const grad__wino *s) {
  return (size_t)POS * s->in_channels * s->out_channels * sizeof(uint16_t);
}

size_t grad__wino_bf16_scratch_bytes(const grad__wino *s, int threads) {
  if (threads < 1) threads = 1;
  const tiling t = tiling_of(s, threads);
  return (size_t)threads * (v_bytes(s, &t) + m_bytes(&t));
}

/* fp32 -> bf16, rounding to nearest even (NaN stays NaN). */
static uint16_t to_bf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

void grad__wino_bf16_weights_lay(const grad__wino *s, const float *oihw, void *out) {
  const int C = s->in_channels, K = s->out_channels;
  uint16_t *u = out;
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++) {
      const float *g = oihw + ((size_t)k * C + c) * 9;
      float gg[4][3], tile[4][4]; /* G g, then (G g) G^T */
      for (int j = 0; j < 3; j++) {
        gg[0][j] = g[j];
        gg[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        gg[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        gg[3][j] = g[6 + j];
      }
      for (int i = 0; i < 4; i++) {
        tile[i][0] = gg[i][0];
        tile[i][1] = 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]);
        tile[i][2] = 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]);
        tile[i][3] = gg[i][2];
      }
      for (int p = 0; p < POS; p++) {
        size_t at = (((size_t)p * (K / KC) + k / KC) * (C / 2) + c / 2) * (KC * 2) +
                    (size_t)(k % KC) * 2 + (c % 2);
        u[at] = to_bf16(tile[p / 4][p % 4]);
      }
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 10)
#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define BF16_INLINE static inline __attribute__((always_inline)) BF16_TARGET

typedef int32_t __attribute__((may_alias)) pair32;

bool grad__wino_bf16_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
}

BF16_INLINE __m512 load16(const uint16_t *p) {
  __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

BF16_INLINE void store16(uint16_t *p, __m512 v) {
  __m256bh h = _mm512_cvtneps_pbh(v);
  _mm256_storeu_si256((__m256i *)p, (__m256i)h);
}

/* What every part of a call shares. */
typedef struct call {
  const grad__wino *s;
  tiling t;
  const uint16_t *src, *u;
  const float *bias;
  uint16_t *dst;
  bool sum, relu;
  char *scratch;
  size_t part_bytes;
} call;

/* Step 1: tiles [first, first + count) of the image into v (B^T d B). */
BF16_TARGET static void transform_input(const call *c, int first, int count, uint16_t *v) {
  const int C = c->s->in_channels, h = c->s->h, w = c->s->w, padded = c->t.padded;
  for (int i = 0; i < padded; i++) {
    const int tile = first + i, ty = tile / c->t.tiles_x, tx = tile % c->t.tiles_x;
    for (int cb = 0; cb < C / 16; cb++) {
      __m512 d[4][4];
      for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++) {
          const int y = 2 * ty - 1 + r, x = 2 * tx - 1 + q;
          d[r][q] = i < count && y >= 0 && y < h && x >= 0 && x < w
                        ? load16(c->src + (((size_t)cb * h + y) * w + x) * 16)
                        : _mm512_setzero_ps();
        }
      __m512 bd[4][4]; /* B^T d: rows */
      for (int q = 0; q < 4; q++) {
        bd[0][q] = _mm512_sub_ps(d[0][q], d[2][q]);
        bd[1][q] = _mm512_add_ps(d[1][q], d[2][q]);
        bd[2][q] = _mm512_sub_ps(d[2][q], d[1][q]);
        bd[3][q] = _mm512_sub_ps(d[1][q], d[3][q]);
      }
      for (int r = 0; r < 4; r++) { /* (B^T d) B: columns */
        const __m512 out[4] = {_mm512_sub_ps(bd[r][0], bd[r][2]), _mm512_add_ps(bd[r][1], bd[r][2]),
                               _mm512_sub_ps(bd[r][2], bd[r][1]), _mm512_sub_ps(bd[r][1], bd[r][3])};
        for (int q = 0; q < 4; q++)
          store16(v + ((size_t)(4 * r + q) * padded + i) * C + cb * 16, out[q]);
      }
    }
  }
}

/* Step 2 for nt tiles: m[tile][32] = sum over input-channel pairs of
 * v[tile][pair] . u[pair][32][2]. nt is 4, 8 or 12, so the accumulators
 * stay in registers. */
BF16_INLINE void product(const uint16_t *v, int C, const uint16_t *u, float *m, const int nt) {
  __m512 acc[NT_MAX][2];
  for (int i = 0; i < nt; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  const pair32 *pairs = (const pair32 *)v;
  for (int cp = 0; cp < C / 2; cp++) {
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(u + (size_t)cp * 64);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(u + (size_t)cp * 64 + 32);
    for (int i = 0; i < nt; i++) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(pairs[(size_t)i * (C / 2) + cp]);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], b, w0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], b, w1);
    }
  }
  for (int i = 0; i < nt; i++) {
    _mm512_storeu_ps(m + (size_t)i * KC, acc[i][0]);
    _mm512_storeu_ps(m + (size_t)i * KC + 16, acc[i][1]);
  }
}

BF16_TARGET static void products(const uint16_t *v, int C, const uint16_t *u, float *m,
                                 int padded) {
  int i = 0;
  for (; i + 12 <= padded; i += 12) product(v + (size_t)i * C, C, u, m + (size_t)i * KC, 12);
  if (padded - i == 8) product(v + (size_t)i * C, C, u, m + (size_t)i * KC, 8);
  if (padded - i == 4) product(v + (size_t)i * C, C, u, m + (size_t)i * KC, 4);
}

/* Step 3: output channels [32 kc, 32 kc + 32) of tiles [first, first +
 * count) from m (A^T M A), with bias, residual and ReLU. */
BF16_TARGET static void transform_output(const call *c, int first, int count, int kc,
                                         const float *m) {
  const int h = c->s->h, w = c->s->w, padded = c->t.padded;
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < count; i++) {
    const int tile = first + i, ty = tile / c->t.tiles_x, tx = tile % c->t.tiles_x;
    for (int half = 0; half < 2; half++) {
      __m512 s[4][2]; /* M A: rows */
      for (int r = 0; r < 4; r++) {
        const float *row = m + ((size_t)(4 * r) * padded + i) * KC + half * 16;
        const size_t step = (size_t)padded * KC;
        const __m512 m0 = _mm512_loadu_ps(row), m1 = _mm512_loadu_ps(row + step),
                     m2 = _mm512_loadu_ps(row + 2 * step), m3 = _mm512_loadu_ps(row + 3 * step);
        s[r][0] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        s[r][1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
      }
      const int kb = kc * 2 + half;
      const __m512 bias = _mm512_loadu_ps(c->bias + kb * 16);
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
          const int y = 2 * ty + a, x = 2 * tx + b;
          if (y >= h || x >= w) continue;
          __m512 out = a == 0 ? _mm512_add_ps(_mm512_add_ps(s[0][b], s[1][b]), s[2][b])
                              : _mm512_sub_ps(_mm512_sub_ps(s[1][b], s[2][b]), s[3][b]);
          out = _mm512_add_ps(out, bias);
          uint16_t *at = c->dst + (((size_t)kb * h + y) * w + x) * 16;
          if (c->sum) out = _mm512_add_ps(out, load16(at));
          if (c->relu) out = _mm512_max_ps(out, zero);
          store16(at, out);
        }
    }
  }
}

static void run_part(void *ctx, int part, int parts) {
  const call *c = ctx;
  const grad__wino *s = c->s;
  const int C = s->in_channels, columns = s->out_channels / KC, padded = c->t.padded;
  uint16_t *v = (uint16_t *)(c->scratch + (size_t)part * c->part_bytes);
  float *m = (float *)((char *)v + v_bytes(s, &c->t));
  for (int b = part; b < c->t.blocks; b += parts) {
    const int first = b * c->t.per_block;
    int count = c->t.tiles - first;
    if (count > c->t.per_block) count = c->t.per_block;
    if (count <= 0) continue;
    transform_input(c, first, count, v);
    for (int kc = 0; kc < columns; kc++) {
      for (int p = 0; p < POS; p++)
        products(v + (size_t)p * padded * C, C,
                 c->u + (((size_t)p * columns + kc) * (C / 2)) * (KC * 2),
                 m + (size_t)p * padded * KC, padded);
      transform_output(c, first, count, kc, m);
    }
  }
}

void grad__wino_bf16_run(const grad__wino *s, int n, const void *src, const void *weights,
                         const float *bias, void *dst, bool sum, bool relu, void *scratch,
                         int threads) {
  if (threads < 1) threads = 1;
  call c = {.s = s, .t = tiling_of(s, threads), .u = weights, .bias = bias, .sum = sum,
            .relu = relu, .scratch = scratch};
  c.part_bytes = v_bytes(s, &c.t) + m_bytes(&c.t);
  const size_t in_image = (size_t)s->in_channels * s->h * s->w;
  const size_t out_image = (size_t)s->out_channels * s->h * s->w;
  for (int i = 0; i < n; i++) {
    c.src = (const uint16_t *)src + i * in_image;
    c.dst = (uint16_t *)dst + i * out_image;
    grad__team_parallel(threads, run_part, &c);
  }
}

#else /* not x86-64 GCC/Clang: never available */

bool grad__wino_bf16_available(void) { return false; }

void grad__wino_bf16_run(const grad__wino *s, int n, const void *src, const void *weights,
                         const float *bias, void *dst, bool sum, bool relu, void *scratch,
                         int threads) {
  (void)s, (void)n, (void)src, (void)weights, (void)bias, (void)dst, (void)sum, (void)relu;
  (void)scratch, (void)threads;
}

#endif

const grad__wino_kernel grad__wino_bf16_kernel = {
    sizeof(uint16_t), grad__wino_bf16_weight_bytes, grad__wino_bf16_weights_lay,
    grad__wino_bf16_scratch_bytes, grad__wino_bf16_run};
