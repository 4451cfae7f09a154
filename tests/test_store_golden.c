/*
 * The grid feature store against PyTorch (tests/make_store_golden.py with
 * tests/grad_reference.py): inference and training outputs, the loss, every
 * gradient and the updated running statistics. Also its initialisation, its
 * model-file tensors (round trip and corrupt files) and concurrent inference.
 * The PyTorch comparisons run on each engine of the matrix products.
 */
#define GRAD_EXPERIMENTAL /* grad_gemm_engine_set */
#include <pthread.h>

#include <grad/store.h>

#include "golden_util.h"
#include "store_internal.h"

/* Fixture 0: BasicBlock decoder; 1: CRAD bottlenecks (make_store_golden.py --decoder crad). */
static const char *golden_path(int which) {
  return test_fixture(which ? "store/golden_crad.safetensors" : "store/golden.safetensors");
}

/* The PyTorch loops: _i % 2 picks the fixture, _i / 2 the engine of the
 * matrix products (OpenBLAS, then oneDNN's sgemm); false where this build
 * lacks the engine (the test then has nothing to do). */
static bool use_gemm_engine(int loop) {
  return grad_gemm_engine_set(loop / 2 ? GRAD_GEMM_ONEDNN : GRAD_GEMM_OPENBLAS) == GRAD_OK;
}


typedef struct golden {
  grad__st_file *file;
  grad_store *store;
  int n, C, P;
  float *F, *noise;
} golden;

static void golden_open(golden *g, int which) {
  ck_assert_int_eq(grad__st_open(golden_path(which), &g->file), GRAD_OK);
  ck_assert_msg(grad__store_read(g->file, &g->store) == GRAD_OK, "%s", grad_last_error());
  const grad__store_config *c = grad__store_config_of(g->store);
  const grad__st_tensor *t = grad__st_find(g->file, "input.features");
  ck_assert_ptr_nonnull(t);
  g->n = (int)t->shape[0];
  g->C = c->channels;
  g->P = c->height * c->width;
  ck_assert_int_eq(t->shape[1], g->C);
  g->F = golden_tensor(g->file, "input.features", NULL);
  g->noise = golden_tensor(g->file, "input.noise", NULL);
}

static void golden_close(golden *g) {
  free(g->F);
  free(g->noise);
  grad_store_free(g->store);
  grad__st_close(g->file);
}

/* max|a - ref| <= rel * max|ref|, naming what is compared. */
static void expect_close(const float *a, const float *ref, size_t n, double rel,
                         const char *what) {
  double max_ref;
  double diff = test_max_abs_diff(a, ref, n, &max_ref);
  ck_assert_msg(diff <= rel * max_ref, "%s: max|diff| %g > %g * max|ref| %g", what, diff, rel,
                max_ref);
}

static double worst_relative(const float *a, const float *ref, size_t n) {
  double max_ref;
  double diff = test_max_abs_diff(a, ref, n, &max_ref);
  return max_ref > 0 ? diff / max_ref : diff;
}

/* Copies of every parameter and buffer value, to see that nothing changed. */
static float *snapshot(grad_store *s, size_t *total) {
  size_t n = 0;
  for (size_t i = 0; i < grad__store_param_count(s); i++) n += grad__store_param(s, i)->count;
  for (size_t i = 0; i < grad__store_buffer_count(s); i++) n += grad__store_buffer(s, i)->count;
  float *v = malloc(sizeof(float) * n), *at = v;
  for (size_t i = 0; i < grad__store_param_count(s); i++) {
    grad__param *p = grad__store_param(s, i);
    memcpy(at, p->value, sizeof(float) * p->count);
    at += p->count;
  }
  for (size_t i = 0; i < grad__store_buffer_count(s); i++) {
    grad__param *p = grad__store_buffer(s, i);
    memcpy(at, p->value, sizeof(float) * p->count);
    at += p->count;
  }
  *total = n;
  return v;
}

START_TEST(inference_matches_pytorch) {
  const int which = _i % 2;
  if (!use_gemm_engine(_i)) return;
  golden g;
  golden_open(&g, which);
  size_t count, before_n, after_n;
  float *expect = golden_tensor(g.file, "expect.eval", &count);
  ck_assert_int_eq(count, (size_t)g.n * g.C * g.P);
  float *R = malloc(sizeof(float) * count);
  float *before = snapshot(g.store, &before_n);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_store_reconstruct(g.store, ws, g.F, g.n, R), GRAD_OK);
  ck_assert_int_eq(grad__store_config_of(g.store)->decoder,
                   which ? GRAD__DECODER_CRAD : GRAD__DECODER_BASIC);
  fprintf(stderr, "golden %d (%s): eval R worst relative error %.2e\n", which,
          grad_gemm_engine_name(), worst_relative(R, expect, count));
  expect_close(R, expect, count, 2e-5, "eval R");
  /* bf16 (the model's bf16 mode) moves the BasicBlock decoder on oneDNN to
   * bf16: within bf16's precision of PyTorch, and not the fp32 bits. */
  if (which == 0 && grad_precision_available(GRAD_PRECISION_BF16)) {
    float *half = malloc(sizeof(float) * count);
    grad__store_precision_set(g.store, GRAD_PRECISION_BF16);
    ck_assert_int_eq(grad_store_reconstruct(g.store, ws, g.F, g.n, half), GRAD_OK);
    grad__store_precision_set(g.store, GRAD_PRECISION_FP32);
    double bf16_error = worst_relative(half, expect, count);
    fprintf(stderr, "golden 0: bf16 eval R worst relative error %.2e\n", bf16_error);
    ck_assert_double_lt(bf16_error, 3e-2);
    ck_assert_double_gt(bf16_error, 1e-5);
    free(half);
  }
  /* Inference leaves the store as it was. */
  float *after = snapshot(g.store, &after_n);
  ck_assert_int_eq(before_n, after_n);
  ck_assert(memcmp(before, after, sizeof(float) * before_n) == 0);
  /* One image at a time gives the same (eval mode has no batch coupling). */
  float one[8 * 36];
  ck_assert_uint_le((size_t)g.C * g.P, sizeof one / sizeof one[0]);
  ck_assert_int_eq(grad_store_reconstruct(g.store, ws, g.F + (size_t)g.C * g.P, 1, one),
                   GRAD_OK);
  expect_close(one, R + (size_t)g.C * g.P, (size_t)g.C * g.P, 1e-6, "single image");
  ck_assert_int_eq(grad_store_channels(g.store), g.C);
  ck_assert_int_eq(grad_store_height(g.store) * grad_store_width(g.store), g.P);
  grad_workspace_free(ws);
  free(expect), free(R), free(before), free(after);
  golden_close(&g);
}
END_TEST

START_TEST(training_step_matches_pytorch) {
  const int which = _i % 2;
  if (!use_gemm_engine(_i)) return;
  golden g;
  golden_open(&g, which);
  size_t count;
  float *expect = golden_tensor(g.file, "expect.train", &count);
  float *loss_ref = golden_tensor(g.file, "expect.loss", NULL);
  float *R = malloc(sizeof(float) * count), *dR = malloc(sizeof(float) * count);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  grad__store_zero_grad(g.store);
  grad__store_tape *tape = NULL;
  ck_assert_int_eq(grad__store_forward_train(g.store, ws, g.F, g.n, g.noise, R, &tape), GRAD_OK);
  fprintf(stderr, "golden %d (%s): train R worst relative error %.2e\n", which,
          grad_gemm_engine_name(), worst_relative(R, expect, count));
  expect_close(R, expect, count, 2e-5, "train R");
  double loss = grad__fusion_loss(R, g.F, g.n, g.C, (size_t)g.P, dR);
  fprintf(stderr, "golden %d: loss %.8g, PyTorch %.8g\n", which, loss, (double)loss_ref[0]);
  ck_assert(fabs(loss - loss_ref[0]) <= 1e-5 * fabs((double)loss_ref[0]));
  ck_assert_int_eq(grad__store_backward(g.store, tape, dR, ws), GRAD_OK);

  char name[128];
  double worst = 0.0;
  for (size_t i = 0; i < grad__store_param_count(g.store); i++) {
    grad__param *p = grad__store_param(g.store, i);
    snprintf(name, sizeof name, "expect.grad.%s", p->name);
    size_t n;
    float *ref = golden_tensor(g.file, name, &n);
    ck_assert_int_eq(n, p->count);
    double err = worst_relative(p->grad, ref, n);
    if (err > worst) worst = err;
    expect_close(p->grad, ref, n, 2e-4, p->name);
    free(ref);
  }
  fprintf(stderr, "golden %d: worst gradient relative error %.2e\n", which, worst);
  /* Running statistics after one training forward (momentum 0.1). */
  for (size_t i = 0; i < grad__store_buffer_count(g.store); i++) {
    grad__param *p = grad__store_buffer(g.store, i);
    snprintf(name, sizeof name, "expect.after.%s", p->name);
    size_t n;
    float *ref = golden_tensor(g.file, name, &n);
    ck_assert_int_eq(n, p->count);
    expect_close(p->value, ref, n, 1e-5, p->name);
    free(ref);
  }
  /* A second backward on the same tape doubles every gradient. */
  grad__param *lg = grad__store_param(g.store, 0);
  float keep = lg->grad[5];
  ck_assert_int_eq(grad__store_backward(g.store, tape, dR, ws), GRAD_OK);
  ck_assert_float_eq_tol(lg->grad[5], 2.0f * keep, 1e-6f * fabsf(keep) + 1e-12f);
  grad__store_zero_grad(g.store);
  ck_assert_float_eq(lg->grad[5], 0.0f);
  grad_workspace_free(ws);
  free(expect), free(loss_ref), free(R), free(dR);
  golden_close(&g);
}
END_TEST

typedef struct worker {
  const grad_store *store;
  const float *F;
  int n;
  float *R;
  grad_status status;
} worker;

static void *reconstruct_worker(void *arg) {
  worker *w = arg;
  grad_workspace *ws = NULL;
  w->status = grad_workspace_create(&ws);
  for (int r = 0; r < 3 && w->status == GRAD_OK; r++)
    w->status = grad_store_reconstruct(w->store, ws, w->F, w->n, w->R);
  grad_workspace_free(ws);
  return NULL;
}

START_TEST(threads_share_one_store) {
  golden g;
  golden_open(&g, _i);
  size_t count = (size_t)g.n * g.C * g.P;
  enum { THREADS = 4 };
  worker w[THREADS];
  pthread_t tid[THREADS];
  float *single = malloc(sizeof(float) * count);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_store_reconstruct(g.store, ws, g.F, g.n, single), GRAD_OK);
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){g.store, g.F, g.n, malloc(sizeof(float) * count), GRAD_E_INTERNAL};
    ck_assert_int_eq(pthread_create(&tid[i], NULL, reconstruct_worker, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(tid[i], NULL);
    ck_assert_int_eq(w[i].status, GRAD_OK);
    expect_close(w[i].R, single, count, 1e-6, "thread");
    free(w[i].R);
  }
  grad_workspace_free(ws);
  free(single);
  golden_close(&g);
}
END_TEST

/* ---- initialisation ------------------------------------------------------ */

static void moments(const float *v, size_t n, double *mean, double *std) {
  double s = 0.0, q = 0.0;
  for (size_t i = 0; i < n; i++) s += v[i], q += (double)v[i] * v[i];
  *mean = s / n;
  *std = sqrt(q / n - *mean * *mean);
}

START_TEST(initialisation_follows_the_method) {
  const grad__store_config config = {8, 6, 6, 8, 4, 2, 0, 0};
  grad_store *s = NULL, *same = NULL, *other = NULL;
  ck_assert_int_eq(grad__store_create(&config, 42, &s), GRAD_OK);
  ck_assert_int_eq(grad__store_param_count(s), 10 + 6 * 2 + 1);
  ck_assert_int_eq(grad__store_buffer_count(s), 4 * 2);
  for (size_t i = 0; i < grad__store_param_count(s); i++) {
    grad__param *p = grad__store_param(s, i);
    double mean, std;
    moments(p->value, p->count, &mean, &std);
    bool grid = strstr(p->name, "_grid") != NULL, bias = strstr(p->name, ".bias") != NULL;
    bool bn = strstr(p->name, ".bn") != NULL;
    ck_assert_int_eq(p->group, grid ? GRAD__PARAM_GRID : GRAD__PARAM_NET);
    ck_assert_ptr_nonnull(p->grad);
    if (grid) {
      /* xavier_normal_ on 1 x K x R x R: std = sqrt(2 / ((K + 1) R^2)). */
      double field = (double)p->shape[2] * p->shape[3];
      double expect = sqrt(2.0 / ((p->shape[1] + 1) * field));
      ck_assert_msg(fabs(std / expect - 1.0) < 0.1, "%s std %g, expected %g", p->name, std,
                    expect);
    } else if (bn) {
      ck_assert(mean == (bias ? 0.0 : 1.0) && std == 0.0);
    } else if (bias) {
      ck_assert(mean == 0.0 && std == 0.0);
    } else if (p->count >= 64) {
      ck_assert_msg(fabs(std / 0.01 - 1.0) < 0.2, "%s std %g", p->name, std);
    }
  }
  grad__param *lg = grad__store_param(s, 0), *gg = grad__store_param(s, 1);
  ck_assert_str_eq(lg->name, "store.local_grid");
  ck_assert(lg->ndim == 4 && lg->shape[0] == 1 && lg->shape[1] == 8 && lg->shape[3] == 8);
  ck_assert_str_eq(gg->name, "store.global_grid");
  ck_assert(gg->shape[1] == 8 * 36 && gg->shape[2] == 4);
  ck_assert_str_eq(grad__store_param(s, 10)->name, "store.decoder.0.conv1.weight");
  ck_assert_str_eq(grad__store_param(s, 22)->name, "store.out.weight");
  ck_assert_ptr_null(grad__store_param(s, 23));
  ck_assert_str_eq(grad__store_buffer(s, 1)->name, "store.decoder.0.bn1.running_var");
  ck_assert_float_eq(grad__store_buffer(s, 1)->value[3], 1.0f);
  ck_assert_float_eq(grad__store_buffer(s, 2)->value[3], 0.0f);
  ck_assert_ptr_null(grad__store_buffer(s, 1)->grad);
  /* The seed decides everything. */
  ck_assert_int_eq(grad__store_create(&config, 42, &same), GRAD_OK);
  ck_assert_int_eq(grad__store_create(&config, 43, &other), GRAD_OK);
  size_t n1, n2, n3;
  float *a = snapshot(s, &n1), *b = snapshot(same, &n2), *c = snapshot(other, &n3);
  ck_assert(memcmp(a, b, sizeof(float) * n1) == 0);
  ck_assert(memcmp(a, c, sizeof(float) * n1) != 0);
  free(a), free(b), free(c);
  grad_store_free(s), grad_store_free(same), grad_store_free(other);
  grad_store_free(NULL);
}
END_TEST

START_TEST(crad_layout_and_initialisation) {
  const grad__store_config config = {8, 6, 6, 8, 4, 2, GRAD__DECODER_CRAD, 24};
  grad_store *s = NULL;
  ck_assert_int_eq(grad__store_create(&config, 42, &s), GRAD_OK);
  ck_assert_int_eq(grad__store_param_count(s), 10 + 11 * 2 + 1);
  ck_assert_int_eq(grad__store_buffer_count(s), 6 * 2);
  static const struct {
    size_t index;
    const char *name;
    int ndim;
    int64_t shape[4];
  } expect[] = {
    {10, "store.decoder.0.expand.weight", 4, {24, 16, 1, 1}},
    {11, "store.decoder.0.bn1.weight", 1, {24}},
    {13, "store.decoder.0.depthwise.weight", 4, {24, 1, 3, 3}},
    {16, "store.decoder.0.se.reduce.weight", 2, {6, 24}},
    {17, "store.decoder.0.se.expand.weight", 2, {24, 6}},
    {18, "store.decoder.0.project.weight", 4, {16, 24, 1, 1}},
    {19, "store.decoder.0.bn3.weight", 1, {16}},
    {20, "store.decoder.0.bn3.bias", 1, {16}},
    {21, "store.decoder.1.expand.weight", 4, {24, 16, 1, 1}},
    {32, "store.out.weight", 4, {8, 16, 1, 1}},
  };
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    grad__param *p = grad__store_param(s, expect[i].index);
    ck_assert_str_eq(p->name, expect[i].name);
    ck_assert_int_eq(p->ndim, expect[i].ndim);
    for (int d = 0; d < p->ndim; d++) ck_assert_int_eq(p->shape[d], expect[i].shape[d]);
  }
  /* Weights N(0, 0.01^2) (depthwise and SE included), BatchNorm 1 / 0. */
  for (size_t i = 10; i < grad__store_param_count(s); i++) {
    grad__param *p = grad__store_param(s, i);
    double mean, std;
    moments(p->value, p->count, &mean, &std);
    if (p->ndim >= 2)
      ck_assert_msg(fabs(std / 0.01 - 1.0) < 0.2, "%s std %g", p->name, std);
    else
      ck_assert(mean == (strstr(p->name, ".weight") ? 1.0 : 0.0) && std == 0.0);
  }
  ck_assert_str_eq(grad__store_buffer(s, 5)->name, "store.decoder.0.bn3.running_var");
  ck_assert_int_eq(grad__store_buffer(s, 0)->count, 24);
  ck_assert_int_eq(grad__store_buffer(s, 4)->count, 16);
  ck_assert_float_eq(grad__store_buffer(s, 5)->value[3], 1.0f);
  ck_assert_float_eq(grad__store_buffer(s, 4)->value[3], 0.0f);
  /* The file says which decoder it holds; reading gives the same store. */
  char path[512];
  snprintf(path, sizeof path, "%s/crad.safetensors", test_tmpdir());
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__store_write(s, w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_file *file = NULL;
  grad_store *back = NULL;
  ck_assert_int_eq(grad__st_open(path, &file), GRAD_OK);
  ck_assert_str_eq(grad__st_meta(file, "store.format"), "2");
  ck_assert_str_eq(grad__st_meta(file, "store.decoder"), "crad");
  ck_assert_str_eq(grad__st_meta(file, "store.expansion"), "24");
  ck_assert_int_eq(grad__store_read(file, &back), GRAD_OK);
  grad__st_close(file);
  remove(path);
  ck_assert(memcmp(grad__store_config_of(s), grad__store_config_of(back), sizeof config) == 0);
  size_t n1, n2;
  float *a = snapshot(s, &n1), *b = snapshot(back, &n2);
  ck_assert_int_eq(n1, n2);
  ck_assert(memcmp(a, b, sizeof(float) * n1) == 0);
  free(a), free(b);
  grad_store_free(back);
  /* Bad decoder settings. */
  grad_store *bad_store = NULL;
  grad__store_config bad = config;
  bad.decoder = 2;
  ck_assert_int_eq(grad__store_create(&bad, 1, &bad_store), GRAD_E_INVALID_ARG);
  bad = config;
  bad.expansion = 3;
  ck_assert_int_eq(grad__store_create(&bad, 1, &bad_store), GRAD_E_INVALID_ARG);
  ck_assert(strstr(grad_last_error(), "expansion") != NULL);
  bad.decoder = GRAD__DECODER_BASIC;
  bad.expansion = 24;
  ck_assert_int_eq(grad__store_create(&bad, 1, &bad_store), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(bad_store);
  grad_store_free(s);
}
END_TEST

START_TEST(bad_configurations_and_arguments) {
  grad_store *s = NULL;
  grad__store_config bad = {0, 6, 6, 8, 4, 2, 0, 0};
  ck_assert_int_eq(grad__store_create(&bad, 1, &s), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(s);
  bad = (grad__store_config){8, 6, 6, 8, 4, -1, 0, 0};
  ck_assert_int_eq(grad__store_create(&bad, 1, &s), GRAD_E_INVALID_ARG);
  bad = (grad__store_config){4096, 1024, 1024, 8, 4, 1, 0, 0};
  ck_assert_int_eq(grad__store_create(&bad, 1, &s), GRAD_E_TOO_LARGE);
  ck_assert_int_eq(grad__store_create(NULL, 1, &s), GRAD_E_INVALID_ARG);

  const grad__store_config one = {2, 1, 1, 2, 2, 1, 0, 0}, small = {2, 2, 2, 2, 2, 0, 0, 0};
  grad_store *a = NULL, *b = NULL;
  ck_assert_int_eq(grad__store_create(&one, 1, &a), GRAD_OK);
  ck_assert_int_eq(grad__store_create(&small, 1, &b), GRAD_OK);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  float F[16] = {0}, R[16];
  grad__store_tape *tape = NULL;
  /* BatchNorm needs two values per channel: one 1x1 map is refused. */
  ck_assert_int_eq(grad__store_forward_train(a, ws, F, 1, NULL, R, &tape), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad__store_forward_train(a, ws, F, 2, NULL, R, &tape), GRAD_OK);
  /* A tape only goes back through its own store. */
  ck_assert_int_eq(grad__store_backward(b, tape, R, ws), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_store_reconstruct(a, ws, F, 0, R), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_store_reconstruct(NULL, ws, F, 1, R), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_store_reconstruct(a, NULL, F, 1, R), GRAD_E_INVALID_ARG);
  /* Zero decoder blocks is a valid (if weak) store. */
  ck_assert_int_eq(grad_store_reconstruct(b, ws, F, 2, R), GRAD_OK);
  grad_workspace_free(ws);
  grad_store_free(a), grad_store_free(b);
}
END_TEST

START_TEST(allocation_failures_are_reported) {
  const grad__store_config config = {4, 3, 3, 3, 2, 1, 0, 0};
  grad_status st = GRAD_E_NOMEM;
  for (long k = 0; st == GRAD_E_NOMEM && k < 50; k++) {
    grad_store *s = NULL;
    grad__alloc_fail_after(k);
    st = grad__store_create(&config, 1, &s);
    grad__alloc_fail_after(-1);
    ck_assert(st == GRAD_OK || st == GRAD_E_NOMEM);
    ck_assert(st == GRAD_OK ? s != NULL : s == NULL);
    grad_store_free(s);
  }
  ck_assert_int_eq(st, GRAD_OK);
}
END_TEST

/* ---- files ------------------------------------------------------------------ */

typedef struct mutation {
  const char *skip;       /* a tensor left out */
  const char *reshape;    /* a tensor written flat (1-D) */
  const char *poison;     /* a tensor whose element 1 becomes NaN */
  const char *negative;   /* a tensor whose element 0 becomes -1 */
  const char *meta_key;   /* metadata key replaced by meta_value, or left out if NULL */
  const char *meta_value;
} mutation;

static void add_tensor(grad__st_writer *w, const grad__param *p, const mutation *m) {
  if (m->skip && strcmp(m->skip, p->name) == 0) return;
  float *v = malloc(sizeof(float) * p->count);
  memcpy(v, p->value, sizeof(float) * p->count);
  if (m->poison && strcmp(m->poison, p->name) == 0) v[1] = NAN;
  if (m->negative && strcmp(m->negative, p->name) == 0) v[0] = -1.0f;
  int64_t flat = (int64_t)p->count;
  bool reshape = m->reshape && strcmp(m->reshape, p->name) == 0;
  ck_assert_int_eq(grad__st_writer_add(w, p->name, reshape ? 1 : p->ndim,
                                       reshape ? &flat : p->shape, v),
                   GRAD_OK);
  free(v);
}

/* Writes s with one mutation, reads it back: the status of the read. */
static grad_status read_mutated(grad_store *s, const mutation *m, grad_store **out) {
  static char path[512];
  snprintf(path, sizeof path, "%s/store.safetensors", test_tmpdir());
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  const grad__store_config *c = grad__store_config_of(s);
  const bool crad = c->decoder == GRAD__DECODER_CRAD;
  const struct {
    const char *key;
    int value;
  } meta[] = {{"store.format", crad ? 2 : 1},  {"store.channels", c->channels},
              {"store.height", c->height}, {"store.width", c->width},
              {"store.local_res", c->local_res}, {"store.global_res", c->global_res},
              {"store.blocks", c->blocks}, {"store.decoder", -1},
              {"store.expansion", c->expansion}};
  for (size_t i = 0; i < sizeof meta / sizeof meta[0] - (crad ? 0 : 2); i++) {
    char text[32];
    snprintf(text, sizeof text, "%d", meta[i].value);
    if (meta[i].value < 0) snprintf(text, sizeof text, "crad");
    bool hit = m->meta_key && strcmp(m->meta_key, meta[i].key) == 0;
    if (hit && !m->meta_value) continue;
    ck_assert_int_eq(grad__st_writer_meta(w, meta[i].key, hit ? m->meta_value : text), GRAD_OK);
  }
  for (size_t i = 0; i < grad__store_param_count(s); i++)
    add_tensor(w, grad__store_param(s, i), m);
  for (size_t i = 0; i < grad__store_buffer_count(s); i++)
    add_tensor(w, grad__store_buffer(s, i), m);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_file *file = NULL;
  ck_assert_int_eq(grad__st_open(path, &file), GRAD_OK);
  grad_status st = grad__store_read(file, out);
  grad__st_close(file);
  remove(path);
  return st;
}

START_TEST(write_then_read_is_exact) {
  const grad__store_config config = {4, 3, 5, 3, 2, 2, 0, 0};
  grad_store *s = NULL, *back = NULL;
  ck_assert_int_eq(grad__store_create(&config, 5, &s), GRAD_OK);
  grad__store_buffer(s, 3)->value[2] = 0.25f; /* a buffer off its default */
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/store.safetensors", dir);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__store_write(s, w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_file *file = NULL;
  ck_assert_int_eq(grad__st_open(path, &file), GRAD_OK);
  ck_assert_str_eq(grad__st_meta(file, "store.width"), "5");
  ck_assert_int_eq(grad__store_read(file, &back), GRAD_OK);
  grad__st_close(file);
  remove(path);
  ck_assert(memcmp(grad__store_config_of(s), grad__store_config_of(back),
                   sizeof(grad__store_config)) == 0);
  size_t n1, n2;
  float *a = snapshot(s, &n1), *b = snapshot(back, &n2);
  ck_assert_int_eq(n1, n2);
  ck_assert(memcmp(a, b, sizeof(float) * n1) == 0);
  free(a), free(b);
  grad_store_free(s), grad_store_free(back);
}
END_TEST

static const struct {
  mutation m;
  grad_status expect;
  const char *mentions;
} corrupt_cases[] = {
  {{.skip = "store.out.weight"}, GRAD_E_MISSING, "store.out.weight"},
  {{.reshape = "store.local_grid"}, GRAD_E_SHAPE, "store.local_grid"},
  {{.poison = "store.decoder.1.conv2.weight"}, GRAD_E_NUMERIC, "store.decoder.1.conv2.weight"},
  {{.negative = "store.decoder.0.bn2.running_var"}, GRAD_E_NUMERIC, "running_var"},
  {{.skip = "store.decoder.1.bn1.running_mean"}, GRAD_E_MISSING, "running_mean"},
  {{.meta_key = "store.blocks"}, GRAD_E_MISSING, "store.blocks"},
  {{.meta_key = "store.channels", .meta_value = "4x"}, GRAD_E_FORMAT, "store.channels"},
  {{.meta_key = "store.channels", .meta_value = "-4"}, GRAD_E_FORMAT, "store.channels"},
  {{.meta_key = "store.height", .meta_value = "0"}, GRAD_E_FORMAT, "height"},
  {{.meta_key = "store.format", .meta_value = "3"}, GRAD_E_VERSION, "store.format"},
  {{.meta_key = "store.format"}, GRAD_E_MISSING, "store.format"},
  /* A file that claims another configuration than its tensors have. */
  {{.meta_key = "store.global_res", .meta_value = "3"}, GRAD_E_SHAPE, "store.global_grid"},
};

/* The same for a CRAD store (format 2). */
static const struct {
  mutation m;
  grad_status expect;
  const char *mentions;
} corrupt_crad_cases[] = {
  {{.skip = "store.decoder.1.se.expand.weight"}, GRAD_E_MISSING, "se.expand.weight"},
  {{.negative = "store.decoder.0.bn3.running_var"}, GRAD_E_NUMERIC, "bn3.running_var"},
  {{.meta_key = "store.decoder"}, GRAD_E_MISSING, "store.decoder"},
  {{.meta_key = "store.decoder", .meta_value = "mobilenet"}, GRAD_E_FORMAT, "store.decoder"},
  {{.meta_key = "store.expansion"}, GRAD_E_MISSING, "store.expansion"},
  {{.meta_key = "store.expansion", .meta_value = "2"}, GRAD_E_FORMAT, "expansion"},
  /* An old (format 1) reader's view: a BasicBlock store, whose tensors are absent. */
  {{.meta_key = "store.format", .meta_value = "1"}, GRAD_E_MISSING, "conv1.weight"},
  {{.meta_key = "store.expansion", .meta_value = "16"}, GRAD_E_SHAPE, "expand.weight"},
};

START_TEST(corrupt_crad_files_are_refused) {
  const grad__store_config config = {4, 3, 3, 3, 2, 2, GRAD__DECODER_CRAD, 8};
  grad_store *s = NULL, *back = (grad_store *)&config;
  ck_assert_int_eq(grad__store_create(&config, 5, &s), GRAD_OK);
  grad_status st = read_mutated(s, &corrupt_crad_cases[_i].m, &back);
  ck_assert_msg(st == corrupt_crad_cases[_i].expect, "case %d: %s (%s)", _i,
                grad_status_name(st), grad_last_error());
  ck_assert_ptr_null(back);
  ck_assert_msg(strstr(grad_last_error(), corrupt_crad_cases[_i].mentions) != NULL,
                "case %d: message \"%s\" does not name %s", _i, grad_last_error(),
                corrupt_crad_cases[_i].mentions);
  mutation none = {0};
  ck_assert_int_eq(read_mutated(s, &none, &back), GRAD_OK);
  grad_store_free(back);
  grad_store_free(s);
}
END_TEST

START_TEST(corrupt_store_files_are_refused) {
  const grad__store_config config = {4, 3, 3, 3, 2, 2, 0, 0};
  grad_store *s = NULL, *back = (grad_store *)&config;
  ck_assert_int_eq(grad__store_create(&config, 5, &s), GRAD_OK);
  grad_status st = read_mutated(s, &corrupt_cases[_i].m, &back);
  ck_assert_msg(st == corrupt_cases[_i].expect, "case %d: %s (%s)", _i, grad_status_name(st),
                grad_last_error());
  ck_assert_ptr_null(back);
  ck_assert_msg(strstr(grad_last_error(), corrupt_cases[_i].mentions) != NULL,
                "case %d: message \"%s\" does not name %s", _i, grad_last_error(),
                corrupt_cases[_i].mentions);
  grad_store_free(s);
}
END_TEST

static Suite *golden_suite(void) {
  Suite *s = suite_create("store_golden");
  TCase *tc = tcase_create("pytorch");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, inference_matches_pytorch, 0, 4);
  tcase_add_loop_test(tc, training_step_matches_pytorch, 0, 4);
  tcase_add_loop_test(tc, threads_share_one_store, 0, 2);
  suite_add_tcase(s, tc);
  TCase *init = tcase_create("store");
  tcase_add_test(init, initialisation_follows_the_method);
  tcase_add_test(init, crad_layout_and_initialisation);
  tcase_add_test(init, bad_configurations_and_arguments);
  tcase_add_test(init, allocation_failures_are_reported);
  tcase_add_test(init, write_then_read_is_exact);
  tcase_add_loop_test(init, corrupt_crad_files_are_refused, 0,
                      sizeof corrupt_crad_cases / sizeof corrupt_crad_cases[0]);
  tcase_add_loop_test(init, corrupt_store_files_are_refused, 0,
                      sizeof corrupt_cases / sizeof corrupt_cases[0]);
  suite_add_tcase(s, init);
  return s;
}

int main(void) { return test_run_suite(golden_suite()); }
