/*
 * Winograd F(4x4, 3x3) in fp32 on AVX-512 (winograd_f32.h).
 *
 * Notation (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016): output tile Y = A^T [(G g G^T) . (B^T d B)] A, with d a
 * 6x6 input tile, g a 3x3 kernel and 36 positions p = 6 i + j of the
 * transformed tiles. Per position the sum over input channels is a product
 * (tiles x Cin) . (Cin x Cout), so a call is, per block of tiles:
 *
 *   1. the block's input tiles transformed: V[p][tile][Cin];
 *   2. per position, per 64 output channels, the product into
 *      M[p][tile][Cout], 6 (or 5) tiles x 64 channels in registers;
 *   3. the output tiles transformed back, with bias, residual and ReLU.
 *
 * Accuracy (docs/backbone.md, "fp32 Winograd"): the matrices are those of
 * the interpolation points 0, -1, 1, 1/2, -2 and infinity, not Lavin's 0,
 * +-1, +-2 (whose A^T reaches 8 on both sides and magnifies the products'
 * rounding), and each product sums its input channels in runs of
 * SUM_RUN, the runs' sums added: both halve the error, which then matches
 * oneDNN's F(4x4) (1e-6 of the output's rms at 384 channels).
 *
 * Step 2 runs one position at a time: that position's V (tiles x Cin) and
 * a 64-channel column of its weights U[p][Cout/64][Cin][64] stay in L2
 * while every tile and column passes, so each weight and each transformed
 * input is read from memory once per block. A block is a whole map unless
 * V and M would pass BLOCK_BYTES, or the threads need more blocks; threads
 * take whole blocks, and a tile's sums do not depend on its block, so
 * outputs are the same for every thread count.
 */
#include "winograd_f32.h"

#include <string.h>

#include "threading.h"

enum {
  POS = 36,   /* positions of a transformed 6x6 tile */
  KC = 64,    /* output channels per product column */
  NT = 6,     /* tiles per register block of the product */
  SUM_RUN = 64, /* input channels summed in registers before adding to M */
  BLOCK_BYTES = 6 << 20,
};

typedef struct tiling {
  int tiles_x, tiles;
  int blocks, per_block; /* tiles per block (the last may have fewer) */
} tiling;

static tiling tiling_of(const grad__wino *s, int threads) {
  tiling t;
  t.tiles_x = (s->w + 3) / 4;
  t.tiles = t.tiles_x * ((s->h + 3) / 4);
  int target = BLOCK_BYTES / (POS * (int)sizeof(float) * (s->in_channels + s->out_channels));
  if (target < NT) target = NT;
  t.blocks = (t.tiles + target - 1) / target;
  if (t.blocks < threads) t.blocks = threads < t.tiles ? threads : t.tiles;
  t.per_block = t.blocks ? (t.tiles + t.blocks - 1) / t.blocks : 0;
  return t;
}

/* Output channels rounded up to whole product columns: the last column's
 * extra weights are zeros, and its extra sums are never read. */
static int columns_of(const grad__wino *s) { return (s->out_channels + KC - 1) / KC; }

static size_t v_bytes(const grad__wino *s, const tiling *t) {
  return grad__ws_round((size_t)POS * t->per_block * s->in_channels * sizeof(float));
}

static size_t m_bytes(const grad__wino *s, const tiling *t) {
  return grad__ws_round((size_t)POS * t->per_block * columns_of(s) * KC * sizeof(float));
}

bool grad__wino_f32_fits(const grad__conv *c) {
  return c->kernel == 3 && c->stride == 1 && c->pad == 1 && c->in_channels % 16 == 0 &&
         c->out_channels % 16 == 0;
}

size_t grad__wino_f32_weight_bytes(const grad__wino *s) {
  return (size_t)POS * s->in_channels * columns_of(s) * KC * sizeof(float);
}

size_t grad__wino_f32_scratch_bytes(const grad__wino *s, int threads) {
  if (threads < 1) threads = 1;
  const tiling t = tiling_of(s, threads);
  return (size_t)threads * (v_bytes(s, &t) + m_bytes(s, &t));
}

void grad__wino_f32_weights_lay(const grad__wino *s, const float *oihw, void *out) {
  static const double G[6][3] = {{1, 0, 0},
                                 {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                 {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                 {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                 {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                 {0, 0, 1}};
  const int C = s->in_channels, K = s->out_channels, columns = columns_of(s);
  float *u = out;
  memset(u, 0, grad__wino_f32_weight_bytes(s));
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++) {
      const float *g = oihw + ((size_t)k * C + c) * 9;
      double gg[6][3], tile[6][6]; /* G g, then (G g) G^T */
      for (int i = 0; i < 6; i++)
        for (int j = 0; j < 3; j++)
          gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
          tile[i][j] = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
      for (int p = 0; p < POS; p++)
        u[(((size_t)p * columns + k / KC) * C + c) * KC + k % KC] = (float)tile[p / 6][p % 6];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define F32_TARGET __attribute__((target("avx512f")))
#define F32_INLINE static inline __attribute__((always_inline)) F32_TARGET

bool grad__wino_f32_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

/* What every part of a call shares. */
typedef struct call {
  const grad__wino *s;
  tiling t;
  const float *src, *u, *bias;
  float *dst;
  bool sum, relu;
  char *scratch;
  size_t part_bytes;
} call;

/* a x + b. */
F32_INLINE __m512 madd(float a, __m512 x, __m512 b) {
  return _mm512_fmadd_ps(_mm512_set1_ps(a), x, b);
}

/* B^T x for the six rows (or columns) x of a tile. B^T's rows:
 *   1  -3/2  -2   3/2   1   0
 *   0   1   -5/2  1/2   1   0
 *   0  -1    1/2  5/2   1   0
 *   0  -2   -1    2     1   0
 *   0   1/2 -1   -1/2   1   0
 *   0   1   -3/2 -2     3/2 1 */
F32_INLINE void input_rows(const __m512 x[6], __m512 out[6]) {
  out[0] = madd(-1.5f, _mm512_sub_ps(x[1], x[3]), madd(-2, x[2], _mm512_add_ps(x[0], x[4])));
  out[1] = madd(-2.5f, x[2], madd(0.5f, x[3], _mm512_add_ps(x[1], x[4])));
  out[2] = madd(0.5f, x[2], madd(2.5f, x[3], _mm512_sub_ps(x[4], x[1])));
  out[3] = madd(2, _mm512_sub_ps(x[3], x[1]), _mm512_sub_ps(x[4], x[2]));
  out[4] = madd(0.5f, _mm512_sub_ps(x[1], x[3]), _mm512_sub_ps(x[4], x[2]));
  out[5] = madd(-1.5f, _mm512_sub_ps(x[2], x[4]), madd(-2, x[3], _mm512_add_ps(x[1], x[5])));
}

/* A^T x for the six rows (or columns) x of a product tile: four outputs.
 * A^T's rows:
 *   1   1  1  1     1  0
 *   0  -1  1  1/2  -2  0
 *   0   1  1  1/4   4  0
 *   0  -1  1  1/8  -8  1 */
F32_INLINE void output_rows(const __m512 x[6], __m512 out[4]) {
  const __m512 s = _mm512_add_ps(x[2], x[1]), d = _mm512_sub_ps(x[2], x[1]);
  out[0] = _mm512_add_ps(_mm512_add_ps(x[0], s), _mm512_add_ps(x[3], x[4]));
  out[1] = madd(-2, x[4], madd(0.5f, x[3], d));
  out[2] = madd(4, x[4], madd(0.25f, x[3], s));
  out[3] = _mm512_add_ps(madd(-8, x[4], madd(0.125f, x[3], d)), x[5]);
}

/* Step 1: tiles [first, first + count) of the image into v (B^T d B). */
F32_TARGET static void transform_input(const call *c, int first, int count, float *v) {
  const int C = c->s->in_channels, h = c->s->h, w = c->s->w;
  for (int i = 0; i < count; i++) {
    const int tile = first + i, ty = tile / c->t.tiles_x, tx = tile % c->t.tiles_x;
    /* most tiles lie inside the map: their loads need no checks */
    const bool inside = ty > 0 && tx > 0 && 4 * ty + 5 <= h && 4 * tx + 5 <= w;
    for (int cb = 0; cb < C / 16; cb++) {
      __m512 d[6][6], col[6], t[6][6];
      for (int r = 0; r < 6; r++)
        for (int q = 0; q < 6; q++) {
          const int y = 4 * ty - 1 + r, x = 4 * tx - 1 + q;
          d[q][r] = inside || (y >= 0 && y < h && x >= 0 && x < w)
                        ? _mm512_loadu_ps(c->src + (((size_t)cb * h + y) * w + x) * 16)
                        : _mm512_setzero_ps();
        }
      for (int q = 0; q < 6; q++) { /* B^T d, column by column */
        input_rows(d[q], col);
        for (int r = 0; r < 6; r++) t[r][q] = col[r];
      }
      for (int r = 0; r < 6; r++) { /* (B^T d) B, row by row */
        input_rows(t[r], col);
        for (int q = 0; q < 6; q++)
          _mm512_storeu_ps(v + ((size_t)(6 * r + q) * count + i) * C + cb * 16, col[q]);
      }
    }
  }
}

/* Step 2 for nt tiles: m[tile][64] = sum over input channels of
 * v[tile][c] u[c][64], in runs of SUM_RUN channels. nt is at most NT, so
 * the accumulators stay in registers. */
F32_INLINE void product(const float *v, int C, const float *u, float *m, int K, const int nt) {
  for (int first = 0; first < C; first += SUM_RUN) {
    const int end = first + SUM_RUN < C ? first + SUM_RUN : C;
    __m512 acc[NT][4];
    for (int i = 0; i < nt; i++)
      for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (int c = first; c < end; c++) {
      const float *uc = u + (size_t)c * KC;
      const __m512 w0 = _mm512_loadu_ps(uc), w1 = _mm512_loadu_ps(uc + 16),
                   w2 = _mm512_loadu_ps(uc + 32), w3 = _mm512_loadu_ps(uc + 48);
      for (int i = 0; i < nt; i++) {
        const __m512 b = _mm512_set1_ps(v[(size_t)i * C + c]);
        acc[i][0] = _mm512_fmadd_ps(b, w0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(b, w1, acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(b, w2, acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(b, w3, acc[i][3]);
      }
    }
    for (int i = 0; i < nt; i++)
      for (int j = 0; j < 4; j++) {
        float *at = m + (size_t)i * K + j * 16;
        _mm512_storeu_ps(at, first ? _mm512_add_ps(_mm512_loadu_ps(at), acc[i][j]) : acc[i][j]);
      }
  }
}

/* One 64-channel column of one position for `count` tiles: blocks of 6
 * tiles, with enough blocks of 5 first that no small remainder is left
 * (49 tiles: 5 x 5 + 4 x 6). */
F32_TARGET static void products(const float *v, int C, const float *u, float *m, int K,
                                int count) {
  int fives = (NT - count % NT) % NT;
  if (fives * (NT - 1) > count) fives = 0;
  int i = 0;
  for (; fives > 0; fives--, i += NT - 1) product(v + (size_t)i * C, C, u, m + (size_t)i * K, K, NT - 1);
  for (; i + NT <= count; i += NT) product(v + (size_t)i * C, C, u, m + (size_t)i * K, K, NT);
  v += (size_t)i * C;
  m += (size_t)i * K;
  switch (count - i) {
    case 1: product(v, C, u, m, K, 1); break;
    case 2: product(v, C, u, m, K, 2); break;
    case 3: product(v, C, u, m, K, 3); break;
    case 4: product(v, C, u, m, K, 4); break;
    case 5: product(v, C, u, m, K, 5); break;
    default: break;
  }
}

/* Step 3: tiles [first, first + count) from m (A^T M A), with bias,
 * residual and ReLU. */
F32_TARGET static void transform_output(const call *c, int first, int count, const float *m) {
  const int K = c->s->out_channels, stride = columns_of(c->s) * KC, h = c->s->h, w = c->s->w;
  const size_t step = (size_t)count * stride; /* from one position to the next */
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < count; i++) {
    const int tile = first + i, ty = tile / c->t.tiles_x, tx = tile % c->t.tiles_x;
    for (int kb = 0; kb < K / 16; kb++) {
      const float *at = m + (size_t)i * stride + kb * 16;
      __m512 col[6], t[4][6], out[4];
      for (int q = 0; q < 6; q++) { /* A^T M, column by column */
        for (int r = 0; r < 6; r++) col[r] = _mm512_loadu_ps(at + (size_t)(6 * r + q) * step);
        output_rows(col, out);
        for (int r = 0; r < 4; r++) t[r][q] = out[r];
      }
      const __m512 bias = _mm512_loadu_ps(c->bias + kb * 16);
      for (int r = 0; r < 4; r++) { /* (A^T M) A, row by row */
        const int y = 4 * ty + r;
        if (y >= h) break;
        output_rows(t[r], out);
        for (int q = 0; q < 4 && 4 * tx + q < w; q++) {
          float *to = c->dst + (((size_t)kb * h + y) * w + 4 * tx + q) * 16;
          __m512 o = _mm512_add_ps(out[q], bias);
          if (c->sum) o = _mm512_add_ps(o, _mm512_loadu_ps(to));
          if (c->relu) o = _mm512_max_ps(o, zero);
          _mm512_storeu_ps(to, o);
        }
      }
    }
  }
}

static void run_part(void *ctx, int part, int parts) {
  const call *c = ctx;
  const grad__wino *s = c->s;
  const int C = s->in_channels, columns = columns_of(s), K = columns * KC;
  float *v = (float *)(c->scratch + (size_t)part * c->part_bytes);
  float *m = (float *)((char *)v + v_bytes(s, &c->t));
  for (int b = part; b < c->t.blocks; b += parts) {
    const int first = b * c->t.per_block;
    int count = c->t.tiles - first;
    if (count > c->t.per_block) count = c->t.per_block;
    if (count <= 0) continue;
    transform_input(c, first, count, v);
    for (int p = 0; p < POS; p++)
      for (int kc = 0; kc < columns; kc++)
        products(v + (size_t)p * count * C, C, c->u + ((size_t)p * columns + kc) * C * KC,
                 m + (size_t)p * count * K + kc * KC, K, count);
    transform_output(c, first, count, m);
  }
}

void grad__wino_f32_run(const grad__wino *s, int n, const void *src, const void *weights,
                        const float *bias, void *dst, bool sum, bool relu, void *scratch,
                        int threads) {
  if (threads < 1) threads = 1;
  call c = {.s = s, .t = tiling_of(s, threads), .u = weights, .bias = bias, .sum = sum,
            .relu = relu, .scratch = scratch};
  c.part_bytes = v_bytes(s, &c.t) + m_bytes(s, &c.t);
  const size_t in_image = (size_t)s->in_channels * s->h * s->w;
  const size_t out_image = (size_t)s->out_channels * s->h * s->w;
  for (int i = 0; i < n; i++) {
    c.src = (const float *)src + i * in_image;
    c.dst = (float *)dst + i * out_image;
    grad__team_parallel(threads, run_part, &c);
  }
}

#else /* not x86-64 GCC/Clang: never available */

bool grad__wino_f32_available(void) { return false; }

void grad__wino_f32_run(const grad__wino *s, int n, const void *src, const void *weights,
                        const float *bias, void *dst, bool sum, bool relu, void *scratch,
                        int threads) {
  (void)s, (void)n, (void)src, (void)weights, (void)bias, (void)dst, (void)sum, (void)relu;
  (void)scratch, (void)threads;
}

#endif

const grad__wino_kernel grad__wino_f32_kernel = {sizeof(float), grad__wino_f32_weight_bytes,
                                                  grad__wino_f32_weights_lay,
                                                  grad__wino_f32_scratch_bytes, grad__wino_f32_run};
