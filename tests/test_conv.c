/* The im2col + sgemm convolution against a plain direct reference, and the
 * pool that runs the passes between GEMMs. */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conv.h"
#include "testutil.h"

static unsigned rng_state = 12345u;
static float uniform(void) { return (float)test_uniform(&rng_state); }

static void fill(float *v, size_t n) {
  for (size_t i = 0; i < n; i++) v[i] = uniform();
}

/* The definition of convolution, in double, one output at a time. */
static void reference_conv(const grad__conv *c, const float *wt, const float *bias, int relu,
                           const float *x, int n, int h, int w, float *y) {
  int oh = grad__conv_out_size(c, h), ow = grad__conv_out_size(c, w), k = c->kernel;
  for (int i = 0; i < n; i++)
    for (int co = 0; co < c->out_channels; co++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          double acc = bias ? bias[co] : 0.0;
          for (int ci = 0; ci < c->in_channels; ci++)
            for (int ky = 0; ky < k; ky++)
              for (int kx = 0; kx < k; kx++) {
                int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                acc += (double)wt[((co * c->in_channels + ci) * k + ky) * k + kx] *
                       x[((size_t)(i * c->in_channels + ci) * h + iy) * w + ix];
              }
          if (relu && acc < 0) acc = 0;
          y[((size_t)(i * c->out_channels + co) * oh + oy) * ow + ox] = (float)acc;
        }
}

static const struct {
  grad__conv conv;
  int n, h, w, bias, relu;
} cases[] = {
  {{3, 5, 7, 2, 3}, 2, 17, 13, 1, 1},   /* the stem's 7x7/2 shape, odd sizes */
  {{13, 11, 3, 1, 1}, 1, 9, 10, 0, 0},  /* 3x3 same padding, odd channel counts */
  {{6, 9, 3, 2, 1}, 3, 8, 11, 1, 0},    /* 3x3 stride 2 */
  {{10, 7, 1, 1, 0}, 2, 5, 6, 1, 1},    /* 1x1 stride 1: no im2col */
  {{10, 7, 1, 2, 0}, 1, 9, 9, 0, 0},    /* 1x1 stride 2 (downsample) */
  {{4, 3, 3, 1, 0}, 1, 3, 3, 1, 0},     /* output 1x1 */
};

START_TEST(fast_conv_matches_reference) {
  const grad__conv *c = &cases[_i].conv;
  int n = cases[_i].n, h = cases[_i].h, w = cases[_i].w;
  int oh = grad__conv_out_size(c, h), ow = grad__conv_out_size(c, w);
  size_t nx = (size_t)n * c->in_channels * h * w, ny = (size_t)n * c->out_channels * oh * ow;
  size_t nw = (size_t)c->out_channels * c->in_channels * c->kernel * c->kernel;
  float *x = malloc(nx * 4), *wt = malloc(nw * 4), *b = malloc(c->out_channels * 4);
  float *y = malloc(ny * 4), *ref = malloc(ny * 4);
  fill(x, nx);
  fill(wt, nw);
  fill(b, c->out_channels);
  const float *bias = cases[_i].bias ? b : NULL;
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  for (int repeat = 0; repeat < 2; repeat++) { /* the reused workspace gives the same */
    ck_assert_int_eq(grad__conv2d(c, wt, bias, cases[_i].relu, x, n, h, w, y, ws), GRAD_OK);
    reference_conv(c, wt, bias, cases[_i].relu, x, n, h, w, ref);
    ck_assert_close_rel(y, ref, ny, 1e-5);
  }
  grad_workspace_free(ws);
  free(x), free(wt), free(b), free(y), free(ref);
}
END_TEST

/* col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>. */
START_TEST(col2im_is_adjoint_of_im2col) {
  const grad__conv c = {5, 1, 3, 2, 1};
  int h = 9, w = 7, oh = grad__conv_out_size(&c, h), ow = grad__conv_out_size(&c, w);
  size_t nx = 5 * h * w, ncol = (size_t)5 * 9 * oh * ow;
  float *x = malloc(nx * 4), *col = malloc(ncol * 4), *ux = malloc(ncol * 4),
        *back = calloc(nx, 4);
  fill(x, nx);
  fill(col, ncol);
  grad__im2col(&c, x, h, w, ux);
  grad__col2im(&c, col, h, w, back);
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < ncol; i++) lhs += (double)ux[i] * col[i];
  for (size_t i = 0; i < nx; i++) rhs += (double)x[i] * back[i];
  ck_assert_double_eq_tol(lhs, rhs, 1e-4 * fabs(lhs) + 1e-6);
  free(x), free(col), free(ux), free(back);
}
END_TEST

START_TEST(kernel_larger_than_input_is_an_error) {
  const grad__conv c = {1, 1, 7, 1, 0};
  float x[4] = {0}, y[4];
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad__conv2d(&c, x, NULL, 0, x, 1, 2, 2, y, ws), GRAD_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "7x7"));
  grad_workspace_free(ws);
}
END_TEST

/* The unfolding by definition: column j = (image, oy, ox) of the batch. */
static float naive_column(const grad__conv *c, const float *x, size_t cstride, size_t istride,
                          int h, int w, size_t row, size_t j) {
  int k = c->kernel, oh = grad__conv_out_size(c, h), ow = grad__conv_out_size(c, w);
  int ch = (int)(row / (size_t)(k * k)), ky = (int)(row / (size_t)k % (size_t)k),
      kx = (int)(row % (size_t)k);
  size_t image = j / ((size_t)oh * ow);
  int oy = (int)(j % ((size_t)oh * ow) / (size_t)ow), ox = (int)(j % (size_t)ow);
  int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
  if (iy < 0 || iy >= h || ix < 0 || ix >= w) return 0.0f;
  return x[ch * cstride + image * istride + (size_t)iy * w + ix];
}

/* im2col over spans of a batch, in both layouts, against the definition
 * (covers the stride-1 "same" shortcut across image borders). */
START_TEST(im2col_span_matches_definition) {
  static const grad__conv convs[] = {
    {3, 1, 3, 1, 1}, {2, 1, 5, 1, 2}, {3, 1, 7, 2, 3}, {2, 1, 3, 2, 1}, {2, 1, 1, 2, 0},
    {2, 1, 3, 1, 0}, {1, 1, 1, 1, 0},
  };
  const int n = 3, h = 7, w = 6;
  float x[3 * 3 * 7 * 6];
  fill(x, sizeof x / sizeof x[0]);
  for (size_t ci = 0; ci < sizeof convs / sizeof convs[0]; ci++) {
    const grad__conv *c = &convs[ci];
    size_t plane = (size_t)grad__conv_out_size(c, h) * grad__conv_out_size(c, w);
    size_t total = n * plane, depth = (size_t)c->in_channels * c->kernel * c->kernel;
    for (int layout = 0; layout < 2; layout++) {
      /* 0: C,N,H,W (images back to back in each channel row); 1: N,C,H,W. */
      size_t cstride = layout ? (size_t)h * w : (size_t)n * h * w;
      size_t istride = layout ? (size_t)c->in_channels * h * w : (size_t)h * w;
      const size_t spans[][2] = {{0, total}, {1, total - 2}, {plane - 3, 5}, {plane, plane},
                                 {total - 1, 1}, {2, 3}};
      for (size_t si = 0; si < sizeof spans / sizeof spans[0]; si++) {
        size_t first = spans[si][0], count = spans[si][1];
        float *col = malloc(depth * count * sizeof(float));
        grad__im2col_span(c, x, cstride, istride, h, w, first, count, col);
        for (size_t r = 0; r < depth; r++)
          for (size_t j = 0; j < count; j++)
            ck_assert_msg(col[r * count + j] ==
                              naive_column(c, x, cstride, istride, h, w, r, first + j),
                          "conv %zu layout %d span %zu row %zu col %zu", ci, layout, si, r, j);
        free(col);
      }
    }
  }
}
END_TEST

/* The C,N,H,W convolution with bias, residual and ReLU, against the
 * reference per image. The deep cases take two column blocks (2352
 * columns; GRAD__CONV_BLOCK_FLOATS / depth is below the 2048 minimum). */
START_TEST(strided_conv_with_residual_matches_reference) {
  static const struct {
    grad__conv conv;
    int n, h, w;
  } batch_cases[] = {
    {{5, 6, 3, 1, 1}, 3, 9, 8}, {{4, 7, 1, 1, 0}, 3, 9, 8}, {{3, 5, 3, 2, 1}, 3, 9, 8},
    {{6, 4, 1, 2, 0}, 3, 9, 8}, {{600, 3, 3, 1, 1}, 3, 28, 28}, {{1024, 3, 1, 1, 0}, 3, 28, 28},
  };
  /* The deep cases really take two blocks of GRAD__CONV_MIN_COLUMNS. */
  ck_assert(GRAD__CONV_BLOCK_FLOATS / (600 * 9) < GRAD__CONV_MIN_COLUMNS);
  ck_assert(GRAD__CONV_BLOCK_FLOATS / 1024 < GRAD__CONV_MIN_COLUMNS);
  ck_assert(3 * 28 * 28 > GRAD__CONV_MIN_COLUMNS && 3 * 28 * 28 < 2 * GRAD__CONV_MIN_COLUMNS);
  for (size_t ci = 0; ci < sizeof batch_cases / sizeof batch_cases[0]; ci++) {
    const grad__conv *c = &batch_cases[ci].conv;
    const int n = batch_cases[ci].n, h = batch_cases[ci].h, w = batch_cases[ci].w;
    int oh = grad__conv_out_size(c, h), ow = grad__conv_out_size(c, w);
    size_t in_plane = (size_t)h * w, out_plane = (size_t)oh * ow;
    size_t nx = (size_t)n * c->in_channels * in_plane, ny = (size_t)n * c->out_channels * out_plane;
    size_t nw = (size_t)c->out_channels * c->in_channels * c->kernel * c->kernel;
    float *x = malloc(nx * 4), *xn = malloc(nx * 4), *wt = malloc(nw * 4), *b = malloc(64);
    float *res = malloc(ny * 4), *y = malloc(ny * 4), *ref = malloc(ny * 4), *one = malloc(ny * 4);
    fill(x, nx), fill(wt, nw), fill(b, (size_t)c->out_channels), fill(res, ny);
    /* x is C,N,H,W; xn the same data as N,C,H,W for the reference. */
    for (int i = 0; i < n; i++)
      for (int ch = 0; ch < c->in_channels; ch++)
        memcpy(xn + ((size_t)i * c->in_channels + ch) * in_plane,
               x + ((size_t)ch * n + i) * in_plane, in_plane * 4);
    grad_workspace *ws = NULL;
    ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
    ck_assert_int_eq(grad__conv2d_strided(c, wt, b, res, true, x, n * in_plane, in_plane, n, h, w,
                                          y, ws),
                     GRAD_OK);
    reference_conv(c, wt, b, 0, xn, n, h, w, one);
    for (int i = 0; i < n; i++)
      for (int co = 0; co < c->out_channels; co++)
        for (size_t j = 0; j < out_plane; j++) {
          size_t cn = ((size_t)co * n + i) * out_plane + j;
          float v = one[((size_t)i * c->out_channels + co) * out_plane + j] + res[cn];
          ref[cn] = v > 0 ? v : 0;
        }
    ck_assert_close_rel(y, ref, ny, 1e-5);
    /* The same batch read in N,C,H,W order gives the same C,N,H,W output. */
    ck_assert_int_eq(grad__conv2d_strided(c, wt, b, res, true, xn, in_plane,
                                          c->in_channels * in_plane, n, h, w, one, ws),
                     GRAD_OK);
    ck_assert_close_rel(one, ref, ny, 1e-5);
    grad_workspace_free(ws);
    free(x), free(xn), free(wt), free(b), free(res), free(y), free(ref), free(one);
  }
}
END_TEST

/* ---- grad__parallel ---- */
typedef struct part_counts {
  int parts;
  int seen[16];
  pthread_mutex_t lock;
} part_counts;

static void count_part(void *ctx, int part, int parts) {
  part_counts *c = ctx;
  pthread_mutex_lock(&c->lock);
  ck_assert_int_eq(parts, c->parts);
  c->seen[part]++;
  pthread_mutex_unlock(&c->lock);
}

static void run_and_check(int parts) {
  part_counts c = {.parts = parts};
  pthread_mutex_init(&c.lock, NULL);
  grad__parallel(parts, count_part, &c);
  for (int i = 0; i < parts; i++) ck_assert_int_eq(c.seen[i], 1);
  pthread_mutex_destroy(&c.lock);
}

static void *hammer(void *arg) {
  (void)arg;
  for (int r = 0; r < 300; r++) run_and_check(1 + r % 4);
  return NULL;
}

START_TEST(parallel_runs_every_part_once) {
  for (int parts = 1; parts <= 16; parts++) run_and_check(parts);
  /* Several callers at once: each job still runs each of its parts once. */
  pthread_t threads[4];
  for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_create(&threads[i], NULL, hammer, NULL), 0);
  for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  /* A forked child starts without the parent's workers and still works. */
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    run_and_check(3);
    _exit(0);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_int_eq(grad__parallel_width(10), 1);
}
END_TEST

/* Items 3 and 6 fail: every item of a part before its failure runs, none
 * after it, and the caller gets item 3's status and message. */
typedef struct item_record {
  pthread_mutex_t lock;
  int ran[10];
} item_record;

static grad_status record_item(void *ctx, int item, int part) {
  item_record *r = ctx;
  (void)part;
  pthread_mutex_lock(&r->lock);
  r->ran[item]++;
  pthread_mutex_unlock(&r->lock);
  if (item == 3) return grad__fail(GRAD_E_IO, "item %d could not be read", item);
  if (item == 6) return grad__fail(GRAD_E_NOMEM, "item %d ran out", item);
  return GRAD_OK;
}

START_TEST(parallel_items_report_the_first_failure) {
  for (int parts = 1; parts <= 12; parts++) {
    item_record r = {.ran = {0}};
    pthread_mutex_init(&r.lock, NULL);
    grad_status st = grad__parallel_items(10, parts, record_item, &r);
    ck_assert_int_eq(st, GRAD_E_IO);
    ck_assert_str_eq(grad_last_error(), "item 3 could not be read");
    /* Ranges of 10 items over min(parts, 10) parts, in order. */
    const int p = parts < 10 ? parts : 10;
    for (int part = 0; part < p; part++) {
      const int first = 10 * part / p, end = 10 * (part + 1) / p;
      bool stopped = false;
      for (int item = first; item < end; item++) {
        ck_assert_int_eq(r.ran[item], stopped ? 0 : 1);
        if (item == 3 || item == 6) stopped = true;
      }
    }
    pthread_mutex_destroy(&r.lock);
  }
  ck_assert_int_eq(grad__parallel_items(0, 2, record_item, NULL), GRAD_OK);
}
END_TEST

/* Threads that ran parts, each part taking a moment so that any worker
 * allowed to join does. */
typedef struct part_threads {
  pthread_mutex_t lock;
  pthread_t seen[16];
  int count;
} part_threads;

static void note_thread(void *ctx, int part, int parts) {
  (void)part, (void)parts;
  part_threads *t = ctx;
  usleep(2000);
  pthread_mutex_lock(&t->lock);
  int known = 0;
  for (int i = 0; i < t->count; i++) known |= pthread_equal(t->seen[i], pthread_self());
  if (!known && t->count < 16) t->seen[t->count++] = pthread_self();
  pthread_mutex_unlock(&t->lock);
}

static int threads_used(int threads, int parts) {
  part_threads t = {.count = 0};
  pthread_mutex_init(&t.lock, NULL);
  grad__parallel_threads(threads, parts, note_thread, &t);
  pthread_mutex_destroy(&t.lock);
  return t.count;
}

/* Workers started by a wider job sit out a narrower one. */
START_TEST(parallel_threads_keeps_to_its_count) {
  ck_assert_int_le(threads_used(4, 8), 4); /* starts 3 workers */
  ck_assert_int_eq(threads_used(1, 8), 1);
  ck_assert_int_le(threads_used(2, 8), 2);
  ck_assert_int_le(threads_used(3, 2), 2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conv");
  TCase *tc = tcase_create("conv");
  tcase_add_loop_test(tc, fast_conv_matches_reference, 0, sizeof cases / sizeof cases[0]);
  tcase_add_test(tc, col2im_is_adjoint_of_im2col);
  tcase_add_test(tc, kernel_larger_than_input_is_an_error);
  tcase_add_test(tc, im2col_span_matches_definition);
  tcase_add_test(tc, strided_conv_with_residual_matches_reference);
  tcase_add_test(tc, parallel_runs_every_part_once);
  tcase_add_test(tc, parallel_threads_keeps_to_its_count);
  tcase_add_test(tc, parallel_items_report_the_first_failure);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
