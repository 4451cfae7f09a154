/* AdamW, StepLR and gradient clipping against hand-computed values, an
 * independent double-precision AdamW and PyTorch (make_train_golden.py). */
#include <unistd.h>

#include "optim.h"
#include "testutil.h"

static grad__param make_param(const char *name, float *value, float *grad, size_t count,
                              grad__param_group group) {
  grad__param p;
  memset(&p, 0, sizeof p);
  p.name = name;
  p.value = value;
  p.grad = grad;
  p.count = count;
  p.ndim = 1;
  p.shape[0] = (int64_t)count;
  p.group = group;
  return p;
}

/* First step by hand: m = 0.1 g, v = 0.001 g^2, so after bias correction
 * the update is lr * g / (|g| + 1e-8) on top of p * (1 - lr * 0.01). */
START_TEST(first_step_by_hand) {
  float gv[3] = {1.0f, -2.0f, 0.5f}, gg[3] = {0.1f, -0.2f, 0.0f};
  float nv[1] = {2.0f}, ng[1] = {-3.0f};
  grad__param grid = make_param("grid", gv, gg, 3, GRAD__PARAM_GRID);
  grad__param net = make_param("net", nv, ng, 1, GRAD__PARAM_NET);
  grad__param *params[2] = {&grid, &net};
  grad__adamw_config config;
  grad__adamw_config_init(&config);
  grad__adamw *opt = NULL;
  ck_assert_int_eq(grad__adamw_create(params, 2, &config, &opt), GRAD_OK);
  grad__adamw_step(opt);
  ck_assert_int_eq(grad__adamw_steps(opt), 1);
  ck_assert_double_eq_tol(gv[0], 0.999 - 0.1 * 0.1 / (0.1 + 1e-8), 2e-7);
  ck_assert_double_eq_tol(gv[1], -1.998 + 0.1 * 0.2 / (0.2 + 1e-8), 2e-7);
  ck_assert_double_eq_tol(gv[2], 0.4995, 1e-7); /* zero gradient: decay only */
  ck_assert_double_eq_tol(nv[0], 2.0 * (1 - 1e-5) + 1e-3 * 3.0 / (3.0 + 1e-8), 2e-7);
  grad__adamw_free(opt);
}
END_TEST

/* torch's documented AdamW algorithm, in double, over several steps with
 * changing gradients and a learning rate change half-way. */
START_TEST(matches_double_reference) {
  enum { N = 64, STEPS = 7 };
  float value[N], grad[N];
  double ref[N], m[N] = {0}, v[N] = {0};
  unsigned state = 7u;
  for (int i = 0; i < N; i++) {
    value[i] = (float)test_uniform(&state);
    ref[i] = value[i];
  }
  grad__param p = make_param("w", value, grad, N, GRAD__PARAM_NET);
  grad__param *params[1] = {&p};
  grad__adamw_config config;
  grad__adamw_config_init(&config);
  grad__adamw *opt = NULL;
  ck_assert_int_eq(grad__adamw_create(params, 1, &config, &opt), GRAD_OK);
  for (int t = 1; t <= STEPS; t++) {
    double lr = t <= 3 ? 1e-3 : 1e-4;
    grad__adamw_set_lr(opt, GRAD__PARAM_NET, lr);
    for (int i = 0; i < N; i++) {
      grad[i] = (float)(test_uniform(&state) * (i + 1) * 0.01);
    }
    grad__adamw_step(opt);
    for (int i = 0; i < N; i++) {
      ref[i] -= lr * 0.01 * ref[i];
      m[i] = 0.9 * m[i] + 0.1 * grad[i];
      v[i] = 0.999 * v[i] + 0.001 * (double)grad[i] * grad[i];
      double mhat = m[i] / (1 - pow(0.9, t)), vhat = v[i] / (1 - pow(0.999, t));
      ref[i] -= lr * mhat / (sqrt(vhat) + 1e-8);
    }
  }
  for (int i = 0; i < N; i++) ck_assert_double_eq_tol(value[i], ref[i], 1e-6);
  grad__adamw_free(opt);
}
END_TEST

START_TEST(step_lr_schedule) {
  ck_assert_double_eq(grad__step_lr(0.1, 0.1, 40, 0), 0.1);
  ck_assert_double_eq(grad__step_lr(0.1, 0.1, 40, 39), 0.1);
  ck_assert_double_eq(grad__step_lr(0.1, 0.1, 40, 40), 0.1 * 0.1);
  ck_assert_double_eq(grad__step_lr(0.1, 0.1, 40, 79), 0.1 * 0.1);
  ck_assert_double_eq(grad__step_lr(0.1, 0.1, 40, 80), 0.1 * 0.1 * 0.1);
  ck_assert_double_eq(grad__step_lr(1e-3, 0.5, 0, 500), 1e-3); /* no schedule */
}
END_TEST

START_TEST(clipping_total_norm) {
  float a[2] = {3.0f, 4.0f}, b[1] = {12.0f}, va[2] = {0}, vb[1] = {0};
  grad__param pa = make_param("a", va, a, 2, GRAD__PARAM_NET);
  grad__param pb = make_param("b", vb, b, 1, GRAD__PARAM_GRID);
  grad__param *params[2] = {&pa, &pb};
  double norm = grad__clip_grad_norm(params, 2, 0.1);
  ck_assert_double_eq_tol(norm, 13.0, 1e-12);
  double scale = 0.1 / (13.0 + 1e-6);
  ck_assert_double_eq_tol(a[0], 3.0 * scale, 1e-7);
  ck_assert_double_eq_tol(a[1], 4.0 * scale, 1e-7);
  ck_assert_double_eq_tol(b[0], 12.0 * scale, 1e-7);
  /* Under the threshold: untouched, bit for bit. */
  float c[2] = {0.03f, 0.04f}, vc[2] = {0};
  grad__param pc = make_param("c", vc, c, 2, GRAD__PARAM_NET);
  grad__param *one[1] = {&pc};
  ck_assert_double_eq_tol(grad__clip_grad_norm(one, 1, 0.1), 0.05, 1e-8);
  ck_assert(c[0] == 0.03f && c[1] == 0.04f);
  /* max_norm 0 disables clipping; a NaN is reported and nothing scaled. */
  ck_assert_double_eq_tol(grad__clip_grad_norm(params, 2, 0.0), 0.1, 1e-6);
  c[1] = NAN;
  ck_assert(isnan(grad__clip_grad_norm(one, 1, 0.1)));
  ck_assert(c[0] == 0.03f);
}
END_TEST

/* Saving the state, loading it into a fresh optimiser and stepping both
 * gives bitwise the same parameters. */
START_TEST(state_round_trip) {
  enum { N = 10 };
  float w1[N], g1[N], w2[N], g2[N];
  for (int i = 0; i < N; i++) w1[i] = w2[i] = 0.1f * (float)i - 0.3f;
  grad__param p1 = make_param("store.w", w1, g1, N, GRAD__PARAM_GRID);
  grad__param p2 = make_param("store.w", w2, g2, N, GRAD__PARAM_GRID);
  grad__param *params1[1] = {&p1}, *params2[1] = {&p2};
  grad__adamw_config config;
  grad__adamw_config_init(&config);
  grad__adamw *a = NULL, *b = NULL;
  ck_assert_int_eq(grad__adamw_create(params1, 1, &config, &a), GRAD_OK);
  ck_assert_int_eq(grad__adamw_create(params2, 1, &config, &b), GRAD_OK);
  for (int t = 0; t < 3; t++) {
    for (int i = 0; i < N; i++) g1[i] = sinf((float)(i + 3 * t));
    grad__adamw_step(a);
  }
  char path[512];
  snprintf(path, sizeof path, "%s/optim.safetensors", test_tmpdir());
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__adamw_write(a, "train.adamw.", w), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  ck_assert_ptr_nonnull(grad__st_find(f, "train.adamw.exp_avg_sq.store.w"));
  ck_assert_int_eq(grad__adamw_read(b, "train.adamw.", f), GRAD_OK);
  ck_assert_int_eq(grad__adamw_steps(b), 3);
  /* A missing key is named. */
  ck_assert_int_eq(grad__adamw_read(b, "other.", f), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "other.step"));
  grad__st_close(f);
  memcpy(w2, w1, sizeof w1);
  for (int i = 0; i < N; i++) g1[i] = g2[i] = cosf((float)i);
  grad__adamw_step(a);
  grad__adamw_step(b);
  ck_assert_mem_eq(w1, w2, sizeof w1);
  grad__adamw_free(a);
  grad__adamw_free(b);
  unlink(path);
}
END_TEST

/* PyTorch's AdamW + StepLR + clip_grad_norm_ over five steps. */
START_TEST(matches_pytorch) {
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(test_fixture("train/optim_golden.safetensors"), &f), GRAD_OK);
  const char *names[3] = {"grid", "net", "net2"};
  grad__param_group groups[3] = {GRAD__PARAM_GRID, GRAD__PARAM_NET, GRAD__PARAM_NET};
  grad__param p[3];
  grad__param *params[3];
  float *value[3], *grad[3], *want[3];
  char key[64];
  for (int k = 0; k < 3; k++) {
    snprintf(key, sizeof key, "%s.init", names[k]);
    const grad__st_tensor *t = grad__st_find(f, key);
    ck_assert_ptr_nonnull(t);
    value[k] = malloc(t->count * 4);
    grad[k] = malloc(t->count * 4);
    want[k] = malloc(t->count * 4);
    ck_assert_int_eq(grad__st_read_f32(f, key, 0, NULL, true, value[k]), GRAD_OK);
    p[k] = make_param(names[k], value[k], grad[k], t->count, groups[k]);
    params[k] = &p[k];
  }
  grad__adamw_config config;
  grad__adamw_config_init(&config);
  grad__adamw *opt = NULL;
  ck_assert_int_eq(grad__adamw_create(params, 3, &config, &opt), GRAD_OK);
  int clipped = 0;
  for (int step = 0; step < 5; step++) {
    for (int k = 0; k < 3; k++) {
      snprintf(key, sizeof key, "%s.grad.%d", names[k], step);
      ck_assert_int_eq(grad__st_read_f32(f, key, 0, NULL, true, grad[k]), GRAD_OK);
    }
    grad__adamw_set_lr(opt, GRAD__PARAM_GRID, grad__step_lr(0.1, 0.1, 2, step));
    grad__adamw_set_lr(opt, GRAD__PARAM_NET, grad__step_lr(1e-3, 0.1, 2, step));
    double norm = grad__clip_grad_norm(params, 3, 0.1);
    snprintf(key, sizeof key, "norm.%d", step);
    ck_assert_ptr_nonnull(grad__st_meta(f, key));
    ck_assert_double_eq_tol(norm, strtod(grad__st_meta(f, key), NULL), 1e-6 * norm);
    clipped += norm > 0.1;
    grad__adamw_step(opt);
    for (int k = 0; k < 3; k++) {
      snprintf(key, sizeof key, "%s.after.%d", names[k], step);
      ck_assert_int_eq(grad__st_read_f32(f, key, 0, NULL, true, want[k]), GRAD_OK);
      ck_assert_close_rel(value[k], want[k], p[k].count, 1e-6);
    }
  }
  ck_assert_int_eq(clipped, 3); /* the golden exercises both branches */
  grad__adamw_free(opt);
  for (int k = 0; k < 3; k++) free(value[k]), free(grad[k]), free(want[k]);
  grad__st_close(f);
}
END_TEST

START_TEST(create_rejects_bad_params) {
  float v[2] = {0};
  grad__param p = make_param("buffer", v, NULL, 2, GRAD__PARAM_NET);
  grad__param *params[1] = {&p};
  grad__adamw_config config;
  grad__adamw_config_init(&config);
  grad__adamw *opt = (grad__adamw *)&p;
  ck_assert_int_eq(grad__adamw_create(params, 1, &config, &opt), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(opt);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "buffer"));
  float g[2] = {0};
  p.grad = g;
  grad__alloc_fail_after(0);
  ck_assert_int_eq(grad__adamw_create(params, 1, &config, &opt), GRAD_E_NOMEM);
  grad__alloc_fail_after(-1);
  grad__adamw_free(NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim");
  TCase *tc = tcase_create("adamw");
  tcase_add_test(tc, first_step_by_hand);
  tcase_add_test(tc, matches_double_reference);
  tcase_add_test(tc, step_lr_schedule);
  tcase_add_test(tc, clipping_total_norm);
  tcase_add_test(tc, state_round_trip);
  tcase_add_test(tc, matches_pytorch);
  tcase_add_test(tc, create_rejects_bad_params);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
