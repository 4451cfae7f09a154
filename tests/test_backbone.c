/*
 * The backbone against PyTorch goldens (tests/make_backbone_golden.py, run
 * by hand with /usr/bin/python3, references computed in float64), its
 * weight-file errors, the neck's align_corners resize on hand-computed
 * cases, shapes of every architecture, batching, model-file round trips and
 * the workspace's no-allocation promise. The goldens run on every compute
 * engine and precision this build and CPU offer (a loop test over `modes`).
 * Tolerance for every golden: max|diff| <= 1e-4 * max|ref| per tensor in
 * fp32; 3e-2 in bf16 (8-bit mantissas through up to 17 layers, fp32
 * accumulation; the test prints what it reaches).
 */
#include <math.h>

#include "backbone_internal.h"
#include "upsample.h"
#include "rng.h"
#include "golden_util.h"

/* The engines and precisions the goldens run on; mode is the current one. */
static const struct {
  grad_engine engine;
  grad_precision precision;
  double tol;
} modes[] = {
    {GRAD_ENGINE_ONEDNN, GRAD_PRECISION_FP32, 1e-4},
    {GRAD_ENGINE_IM2COL, GRAD_PRECISION_FP32, 1e-4},
    {GRAD_ENGINE_ONEDNN, GRAD_PRECISION_BF16, 3e-2},
};
static int mode;
static double golden_tol = 1e-4;

/* Puts bb in the current mode; false (and a note) where this build or CPU
 * lacks it, and the test then checks nothing more. */
static bool use_mode(grad_backbone *bb) {
  golden_tol = modes[mode].tol;
  if (!grad_engine_available(modes[mode].engine) ||
      !grad_precision_available(modes[mode].precision)) {
    fprintf(stderr, "  %s %s: not available here, skipped\n",
            grad_engine_name(modes[mode].engine), grad_precision_name(modes[mode].precision));
    return false;
  }
  ck_assert_msg(grad_backbone_compute_set(bb, modes[mode].engine, modes[mode].precision) ==
                    GRAD_OK, "%s", grad_last_error());
  ck_assert_int_eq(grad_backbone_engine(bb), modes[mode].engine);
  fprintf(stderr, " %s %s:\n", grad_engine_name(modes[mode].engine),
          grad_precision_name(modes[mode].precision));
  return true;
}




static void options(grad_backbone_options *o, const char *arch, unsigned layers, int size,
                    int stride) {
  grad_backbone_options_init(o, sizeof *o);
  o->arch = arch;
  o->layers = layers;
  o->input_size = size;
  o->output_stride = stride;
}

#define L(k) GRAD_BACKBONE_LAYER(k)

/* Checks every requested stage and one neck of bb against golden file f. */
static void check_stages(const grad_backbone *bb, const grad__st_file *f, int n,
                         const float *input) {
  float *stages[5] = {NULL};
  size_t count[5] = {0};
  for (int k = 1; k <= 4; k++) {
    if (!(grad_backbone_layers(bb) & L(k))) continue;
    int side = bb->stage_size[k];
    count[k] = (size_t)n * grad_backbone_stage_channels(bb, k) * side * side;
    stages[k] = malloc(count[k] * sizeof(float));
  }
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad__backbone_stages(bb, ws, input, n, stages), GRAD_OK);
  char name[16];
  for (int k = 1; k <= 4; k++) {
    if (!stages[k]) continue;
    snprintf(name, sizeof name, "layer%d", k);
    golden_expect(f, name, stages[k], count[k], golden_tol);
    free(stages[k]);
  }
  grad_workspace_free(ws);
}

static void check_neck(const grad_backbone *bb, const grad__st_file *f, const char *name, int n,
                       const float *input) {
  size_t count = (size_t)n * grad_backbone_feature_channels(bb) *
                 grad_backbone_feature_height(bb) * grad_backbone_feature_width(bb);
  float *out = malloc(count * sizeof(float));
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, input, n, out), GRAD_OK);
  golden_expect(f, name, out, count, golden_tol);
  grad_workspace_free(ws);
  free(out);
}

/* ---- Fixture weights: torchvision-named files drawn from lib/common/rng.c ---------
 * The same stream as make_backbone_golden.py's seeded_weights(fixture_bn=True).
 * A tamper entry changes one tensor on the way, for the error tests. */
typedef enum { TAMPER_NONE, TAMPER_DROP, TAMPER_SHAPE, TAMPER_NAN, TAMPER_INF } tamper_kind;

typedef struct fixture_ctx {
  grad__rng rng;
  grad__st_writer *writer;
  const char *tamper_name;
  tamper_kind tamper;
} fixture_ctx;

static void add(fixture_ctx *c, const char *name, int ndim, int64_t *shape, float *data,
                size_t count) {
  if (c->tamper_name && !strcmp(name, c->tamper_name)) {
    if (c->tamper == TAMPER_DROP) return;
    if (c->tamper == TAMPER_SHAPE) shape[ndim - 1] -= 1;
    if (c->tamper == TAMPER_NAN) data[count / 2] = NAN;
    if (c->tamper == TAMPER_INF) data[count - 1] = -INFINITY;
  }
  ck_assert_int_eq(grad__st_writer_add(c->writer, name, ndim, shape, data), GRAD_OK);
}

static grad_status fixture_conv(grad__bb_conv *conv, void *ctx) {
  fixture_ctx *c = ctx;
  const grad__conv *s = &conv->shape;
  size_t nw = (size_t)s->out_channels * s->in_channels * s->kernel * s->kernel;
  int cout = s->out_channels;
  float *w = malloc(nw * sizeof(float)), *p = malloc((size_t)cout * sizeof(float));
  char name[128];
  grad__rng_fill_normal(&c->rng, w, nw, 0.0, sqrt(2.0 / ((double)cout * s->kernel * s->kernel)));
  int64_t wshape[4] = {cout, s->in_channels, s->kernel, s->kernel};
  snprintf(name, sizeof name, "%s.weight", conv->name);
  add(c, name, 4, wshape, w, nw);
  static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 0; i < 4; i++) {
    for (int o = 0; o < cout; o++)
      p[o] = (i == 0 || i == 3) ? (float)(0.5 + grad__rng_uniform(&c->rng))
                                : (float)(0.2 * grad__rng_normal(&c->rng));
    int64_t shape[1] = {cout};
    snprintf(name, sizeof name, "%s.%s", conv->bn, parts[i]);
    add(c, name, 1, shape, p, (size_t)cout);
  }
  free(w);
  free(p);
  return GRAD_OK;
}

/* Writes resnet18's fixture weights up to the last stage in layers (plus
 * an fc holding a NaN that must be ignored) to dir/name; returns the path
 * (static). */
static const char *write_fixture_weights(const char *dir, const char *name, unsigned layers,
                                         const char *arch_meta, const char *tamper_name,
                                         tamper_kind tamper) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  grad_backbone_options o;
  options(&o, "resnet18", layers, 64, 8);
  grad_backbone *shape = NULL;
  ck_assert_int_eq(grad__backbone_build(grad__resnet_arch_find("resnet18"), &o, &shape), GRAD_OK);
  fixture_ctx c = {.tamper_name = tamper_name, .tamper = tamper};
  grad__rng_seed(&c.rng, 1234);
  ck_assert_int_eq(grad__st_writer_create(&c.writer), GRAD_OK);
  ck_assert_int_eq(grad__backbone_each_conv(shape, fixture_conv, &c), GRAD_OK);
  float fc[10 * 512] = {0};
  fc[7] = NAN;
  int64_t fc_shape[2] = {10, 512}, fc_bias[1] = {10};
  ck_assert_int_eq(grad__st_writer_add(c.writer, "fc.weight", 2, fc_shape, fc), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(c.writer, "fc.bias", 1, fc_bias, fc), GRAD_OK);
  if (arch_meta) ck_assert_int_eq(grad__st_writer_meta(c.writer, "arch", arch_meta), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(c.writer, "source", "test fixture seed 1234"), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(c.writer, path), GRAD_OK);
  grad__st_writer_free(c.writer);
  grad_backbone_free(shape);
  return path;
}

/* ---- Goldens ----------------------------------------------------------------- */

START_TEST(resnet18_matches_pytorch) {
  mode = _i;
  const char *path = write_fixture_weights(test_tmpdir(), "r18.safetensors", L(4), "resnet18", NULL,
                                           TAMPER_NONE);
  grad__st_file *f = golden_file_open("backbone/resnet18_s64.safetensors");
  float *input = golden_tensor(f, "input", NULL);
  grad_backbone_options o;
  options(&o, "resnet18", L(1) | L(2) | L(3) | L(4), 64, 8);
  o.weights_path = path;
  grad_backbone *bb = NULL;
  ck_assert_msg(grad_backbone_create(&o, &bb) == GRAD_OK, "%s", grad_last_error());
  if (!use_mode(bb)) {
    grad_backbone_free(bb);
    free(input);
    grad__st_close(f);
    return;
  }
  ck_assert_ptr_nonnull(strstr(grad_backbone_weights_source(bb), "r18.safetensors"));
  check_stages(bb, f, 2, input);
  grad_backbone_free(bb);

  o.layers = L(2) | L(3);
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert(use_mode(bb));
  ck_assert_int_eq(grad_backbone_feature_channels(bb), 384);
  ck_assert_int_eq(grad_backbone_feature_height(bb), 8);
  check_neck(bb, f, "neck_l23_s8", 2, input);
  grad_backbone_free(bb);

  o.layers = L(1) | L(2) | L(3) | L(4);
  o.output_stride = 16;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert(use_mode(bb));
  ck_assert_int_eq(grad_backbone_feature_channels(bb), 960);
  ck_assert_int_eq(grad_backbone_feature_width(bb), 4);
  check_neck(bb, f, "neck_l1234_s16", 2, input);
  grad_backbone_free(bb);
  free(input);
  grad__st_close(f);
}
END_TEST

/* A non-standard torchvision ResNet(Bottleneck, [2, 2, 1, 1],
 * width_per_group=16), built from a descriptor; its F16 weights file holds
 * only the stem, layer1 and layer2. */
static const grad__resnet_arch tiny_arch = {"bottleneck_tiny", true, {2, 2, 1, 1}, 16};

START_TEST(bottleneck_matches_pytorch) {
  mode = _i;
  grad__st_file *f = golden_file_open("backbone/bottleneck_tiny_golden.safetensors");
  float *input = golden_tensor(f, "input", NULL);
  grad_backbone_options o;
  options(&o, NULL, L(1) | L(2), 32, 8);
  o.weights_path = test_fixture("backbone/bottleneck_tiny_weights.safetensors");
  grad_backbone *bb = NULL;
  ck_assert_msg(grad__backbone_create_arch(&tiny_arch, &o, &bb) == GRAD_OK, "%s",
                grad_last_error());
  if (!use_mode(bb)) {
    grad_backbone_free(bb);
    free(input);
    grad__st_close(f);
    return;
  }
  ck_assert_int_eq(grad_backbone_feature_channels(bb), 256 + 512);
  check_stages(bb, f, 2, input);
  check_neck(bb, f, "neck_l12_s8", 2, input);
  grad_backbone_free(bb);
  /* layer3 is not in the file: asking for it names the first absent tensor. */
  o.layers = L(3);
  ck_assert_int_eq(grad__backbone_create_arch(&tiny_arch, &o, &bb), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "layer3.0.conv1.weight"));
  free(input);
  grad__st_close(f);
}
END_TEST

START_TEST(seeded_wide_resnet50_2_matches_pytorch) {
  mode = _i;
  grad__st_file *f = golden_file_open("backbone/wide_resnet50_2_seed7.safetensors");
  float *input = golden_tensor(f, "input", NULL);
  grad_backbone_options o;
  options(&o, "wide_resnet50_2", L(1) | L(2) | L(3), 32, 8);
  o.random_seed = 7;
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  if (!use_mode(bb)) {
    grad_backbone_free(bb);
    free(input);
    grad__st_close(f);
    return;
  }
  ck_assert_str_eq(grad_backbone_weights_source(bb), "random (seed 7)");
  check_stages(bb, f, 2, input);
  grad_backbone_free(bb);
  /* Fewer stages draw the same weights for the stages kept. */
  o.layers = L(2) | L(3);
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert(use_mode(bb));
  check_neck(bb, f, "neck_l23_s8", 2, input);
  grad_backbone_free(bb);
  free(input);
  grad__st_close(f);
}
END_TEST

/* ---- Weight-file errors --------------------------------------------------------- */

static grad_status create_r18(const char *path, unsigned layers) {
  grad_backbone_options o;
  options(&o, "resnet18", layers, 64, 8);
  o.weights_path = path;
  grad_backbone *bb = NULL;
  grad_status st = grad_backbone_create(&o, &bb);
  if (st == GRAD_OK) ck_assert_ptr_nonnull(bb);
  else ck_assert_ptr_null(bb);
  grad_backbone_free(bb);
  return st;
}

static void expect_error(grad_status got, grad_status want, const char *const *needles) {
  ck_assert_msg(got == want, "status %s, expected %s (%s)", grad_status_name(got),
                grad_status_name(want), grad_last_error());
  for (; *needles; needles++)
    ck_assert_msg(strstr(grad_last_error(), *needles), "message '%s' lacks '%s'",
                  grad_last_error(), *needles);
}

START_TEST(missing_tensor_is_named) {
  const char *dir = test_tmpdir();
  const char *path = write_fixture_weights(dir, "w.safetensors", L(3), "resnet18",
                                           "layer2.1.bn2.running_var", TAMPER_DROP);
  const char *needles[] = {"layer2.1.bn2.running_var", "w.safetensors", NULL};
  expect_error(create_r18(path, L(2) | L(3)), GRAD_E_MISSING, needles);
  /* With layer1 the last stage, layer2 is never read. */
  ck_assert_int_eq(create_r18(path, L(1)), GRAD_OK);
}
END_TEST

START_TEST(wrong_shape_is_named_with_both_shapes) {
  const char *path = write_fixture_weights(test_tmpdir(), "w.safetensors", L(3), "resnet18",
                                           "layer3.0.downsample.0.weight", TAMPER_SHAPE);
  const char *needles[] = {"layer3.0.downsample.0.weight", "[256, 128, 1, 1]", "[256, 128, 1, 0]",
                           NULL};
  expect_error(create_r18(path, L(3)), GRAD_E_SHAPE, needles);
  /* A stage after the last one requested is never read. */
  ck_assert_int_eq(create_r18(path, L(1) | L(2)), GRAD_OK);
}
END_TEST

START_TEST(nan_and_inf_weights_are_named) {
  const char *dir = test_tmpdir();
  const char *path = write_fixture_weights(dir, "nan.safetensors", L(1), NULL,
                                           "layer1.0.conv2.weight", TAMPER_NAN);
  const char *needles[] = {"layer1.0.conv2.weight", NULL};
  expect_error(create_r18(path, L(1)), GRAD_E_NUMERIC, needles);
  path = write_fixture_weights(dir, "inf.safetensors", L(1), NULL, "bn1.running_mean", TAMPER_INF);
  const char *needles2[] = {"bn1.running_mean", NULL};
  expect_error(create_r18(path, L(1)), GRAD_E_NUMERIC, needles2);
}
END_TEST

START_TEST(negative_running_variance_is_refused) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/var.safetensors", dir);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  float conv[64 * 3 * 7 * 7] = {0}, ones[64], var[64];
  for (int i = 0; i < 64; i++) ones[i] = 1.0f, var[i] = 1.0f;
  var[5] = -0.5f;
  int64_t cs[4] = {64, 3, 7, 7}, bs[1] = {64};
  ck_assert_int_eq(grad__st_writer_add(w, "conv1.weight", 4, cs, conv), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "bn1.weight", 1, bs, ones), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "bn1.bias", 1, bs, ones), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "bn1.running_mean", 1, bs, ones), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_add(w, "bn1.running_var", 1, bs, var), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  const char *needles[] = {"bn1.running_var", "index 5", NULL};
  expect_error(create_r18(path, L(1)), GRAD_E_NUMERIC, needles);
}
END_TEST

START_TEST(file_of_another_architecture_is_refused) {
  /* resnet18's names are a subset of resnet34's: the arch metadata decides. */
  const char *path = write_fixture_weights(test_tmpdir(), "w.safetensors", L(2), "resnet34", NULL,
                                           TAMPER_NONE);
  const char *needles[] = {"resnet34", "resnet18", NULL};
  expect_error(create_r18(path, L(2)), GRAD_E_INVALID_ARG, needles);
  const char *missing[] = {"/nonexistent/w.safetensors", NULL};
  expect_error(create_r18("/nonexistent/w.safetensors", L(2)), GRAD_E_IO, missing);
}
END_TEST

START_TEST(bad_options_are_refused) {
  grad_backbone_options o;
  grad_backbone *bb = (grad_backbone *)&o;
  options(&o, "resnet19", L(2), 64, 8);
  const char *arch[] = {"resnet19", "wide_resnet50_2", NULL};
  expect_error(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG, arch);
  ck_assert_ptr_null(bb);
  options(&o, "resnet18", 0, 64, 8);
  const char *layers[] = {"layers", NULL};
  expect_error(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG, layers);
  o.layers = L(0) | L(2);
  expect_error(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG, layers);
  options(&o, "resnet18", L(2), 64, 12);
  const char *stride[] = {"output_stride 12", NULL};
  expect_error(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG, stride);
  options(&o, "resnet18", L(2), 16, 8);
  const char *size[] = {"input_size 16", NULL};
  expect_error(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG, size);
  options(&o, "resnet18", L(2), 64, 8);
  o.struct_size = 8;
  const char *ss[] = {"struct_size", NULL};
  expect_error(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG, ss);
  ck_assert_int_eq(grad_backbone_create(NULL, &bb), GRAD_E_INVALID_ARG);
  grad_backbone_free(NULL);
}
END_TEST

/* ---- The neck's resize, by hand ------------------------------------------------- */

START_TEST(align_corners_resize_hand_cases) {
  /* 2x2 -> 3x3: corners kept, midpoints are averages. */
  const float a[4] = {0, 1, 2, 3};
  const float a3[9] = {0, 0.5f, 1, 1, 1.5f, 2, 2, 2.5f, 3};
  float out[20];
  grad__resize_bilinear_ac(a, 1, 2, 2, out, 3, 3);
  for (int i = 0; i < 9; i++) ck_assert_float_eq_tol(out[i], a3[i], 1e-6);
  /* 3x3 -> 2x2 keeps exactly the corners. */
  const float b[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  grad__resize_bilinear_ac(b, 1, 3, 3, out, 2, 2);
  ck_assert_float_eq(out[0], 1);
  ck_assert_float_eq(out[1], 3);
  ck_assert_float_eq(out[2], 7);
  ck_assert_float_eq(out[3], 9);
  /* A plane linear in y and x is reproduced exactly: f = 3y + x on 2x3,
   * resized to 4x5, samples y = oy / 3, x = ox / 2. */
  const float c[6] = {0, 1, 2, 3, 4, 5};
  grad__resize_bilinear_ac(c, 1, 2, 3, out, 4, 5);
  for (int oy = 0; oy < 4; oy++)
    for (int ox = 0; ox < 5; ox++)
      ck_assert_float_eq_tol(out[oy * 5 + ox], 3.0f * oy / 3.0f + ox / 2.0f, 1e-5);
  /* A wide output: every column on the line. */
  float *wide = malloc(2 * 1100 * sizeof(float));
  grad__resize_bilinear_ac(c, 1, 2, 3, wide, 2, 1100);
  for (int oy = 0; oy < 2; oy++)
    for (int ox = 0; ox < 1100; ox++)
      ck_assert_float_eq_tol(wide[oy * 1100 + ox], 3.0f * oy + 2.0f * ox / 1099.0f, 1e-5);
  free(wide);
  /* One output pixel takes the top-left input. */
  grad__resize_bilinear_ac(b, 1, 3, 3, out, 1, 1);
  ck_assert_float_eq(out[0], 1);
}
END_TEST

/* The stem's max pooling against its definition, odd and even sizes. */
START_TEST(maxpool_matches_definition) {
  static const int sizes[][2] = {{1, 1}, {2, 3}, {3, 2}, {7, 8}, {9, 9}, {12, 5}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    int h = sizes[s][0], w = sizes[s][1], oh = (h - 1) / 2 + 1, ow = (w - 1) / 2 + 1;
    float x[2 * 12 * 9], y[2 * 6 * 5];
    grad__rng rng;
    grad__rng_seed(&rng, (uint64_t)s);
    grad__rng_fill_normal(&rng, x, (size_t)2 * h * w, 0.0, 1.0);
    grad__maxpool_3x3s2(x, 2, h, w, y);
    for (int p = 0; p < 2; p++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          float m = -INFINITY;
          for (int iy = 2 * oy - 1; iy <= 2 * oy + 1; iy++)
            for (int ix = 2 * ox - 1; ix <= 2 * ox + 1; ix++)
              if (iy >= 0 && iy < h && ix >= 0 && ix < w && x[(p * h + iy) * w + ix] > m)
                m = x[(p * h + iy) * w + ix];
          ck_assert_float_eq(y[(p * oh + oy) * ow + ox], m);
        }
  }
}
END_TEST

/* ---- Architectures, batches, model files, workspace ----------------------------- */

START_TEST(every_architecture_builds_with_the_right_shapes) {
  static const struct {
    const char *arch;
    unsigned layers;
    int channels;
  } cases[] = {
    {"resnet18", L(2) | L(3), 128 + 256},
    {"resnet34", L(2) | L(3), 128 + 256},
    {"resnet50", L(2) | L(3), 512 + 1024},
    {"resnet101", L(2) | L(3), 512 + 1024},
    {"wide_resnet50_2", L(1) | L(2), 256 + 512}, /* layer3: the seeded golden */
    {"wide_resnet101_2", L(1) | L(2), 256 + 512},
    {"resnet18", L(4), 512},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    grad_backbone_options o;
    options(&o, cases[i].arch, cases[i].layers, 64, 8);
    o.random_seed = 3;
    grad_backbone *bb = NULL;
    ck_assert_msg(grad_backbone_create(&o, &bb) == GRAD_OK, "%s: %s", cases[i].arch,
                  grad_last_error());
    ck_assert_str_eq(grad_backbone_arch(bb), cases[i].arch);
    ck_assert_int_eq(grad_backbone_feature_channels(bb), cases[i].channels);
    ck_assert_int_eq(grad_backbone_feature_height(bb), 8);
    ck_assert_int_eq(grad_backbone_feature_width(bb), 8);
    float input[3 * 64 * 64];
    for (int j = 0; j < 3 * 64 * 64; j++) input[j] = (float)sin(j * 0.01);
    size_t count = (size_t)cases[i].channels * 64;
    float *out = malloc(count * sizeof(float));
    grad_workspace *ws = NULL;
    ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
    ck_assert_int_eq(grad_backbone_features(bb, ws, input, 1, out), GRAD_OK);
    double sum = 0;
    for (size_t j = 0; j < count; j++) {
      ck_assert(isfinite(out[j]) && out[j] >= 0.0f); /* every stage ends in a ReLU */
      sum += out[j];
    }
    ck_assert(sum > 0);
    free(out);
    grad_workspace_free(ws);
    grad_backbone_free(bb);
  }
}
END_TEST

START_TEST(later_stages_are_not_built) {
  grad_backbone_options o;
  options(&o, "resnet34", L(1), 64, 8);
  grad_backbone *a = NULL, *b = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &a), GRAD_OK);
  o.layers = L(3);
  ck_assert_int_eq(grad_backbone_create(&o, &b), GRAD_OK);
  ck_assert_int_eq(a->block_count, 3);
  ck_assert_int_eq(b->block_count, 3 + 4 + 6);
  /* stem + layer1: 64*3*49 + 6 * 64*64*9 weights, plus biases. */
  ck_assert_uint_eq(a->storage_floats, 64 * 3 * 49 + 64 + 6 * (64 * 64 * 9 + 64));
  ck_assert(b->storage_floats > 8000000);
  /* The stem and layer1 draw the same weights whatever comes after. */
  ck_assert_mem_eq(a->storage, b->storage, a->storage_floats * sizeof(float));
  grad_backbone_free(a);
  grad_backbone_free(b);
}
END_TEST

START_TEST(random_init_follows_torchvision) {
  grad_backbone_options o;
  options(&o, "resnet50", L(2), 64, 8);
  o.random_seed = 11;
  grad_backbone *a = NULL, *b = NULL, *c = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &a), GRAD_OK);
  ck_assert_int_eq(grad_backbone_create(&o, &b), GRAD_OK);
  o.random_seed = 12;
  ck_assert_int_eq(grad_backbone_create(&o, &c), GRAD_OK);
  ck_assert_mem_eq(a->storage, b->storage, a->storage_floats * sizeof(float));
  ck_assert(memcmp(a->storage, c->storage, a->storage_floats * sizeof(float)) != 0);
  /* layer2.0.conv2: 128 x 128 x 3 x 3, kaiming fan_out: std sqrt(2 / (128 * 9)),
   * times the identity BatchNorm's 1 / sqrt(1 + 1e-5); bias 0. */
  const grad__bb_conv *conv = &a->blocks[3].conv[1];
  ck_assert_str_eq(conv->name, "layer2.0.conv2");
  ck_assert_str_eq(conv->bn, "layer2.0.bn2");
  size_t n = 128 * 128 * 9;
  double sum = 0, sq = 0;
  for (size_t i = 0; i < n; i++) {
    sum += conv->weight[i];
    sq += (double)conv->weight[i] * conv->weight[i];
  }
  double mean = sum / n, std = sqrt(sq / n - mean * mean);
  double want = sqrt(2.0 / (128 * 9)) / sqrt(1.0 + 1e-5);
  ck_assert_double_le(fabs(mean), 3 * want / sqrt((double)n) + 1e-12);
  ck_assert_double_eq_tol(std, want, 0.01 * want);
  for (int i = 0; i < 128; i++) ck_assert_float_eq(conv->bias[i], 0.0f);
  grad_backbone_free(a);
  grad_backbone_free(b);
  grad_backbone_free(c);
}
END_TEST

/* Batches go in groups of 8, each run one image at a time while maps are
 * large and as a group afterwards: at 112 x 112, layer1 (28 x 28) per image,
 * layer2 and layer3 (14 x 14, 7 x 7) per group. Same results as one by one. */
START_TEST(batch_matches_single_images) {
  mode = _i;
  grad_backbone_options o;
  options(&o, "resnet18", L(1) | L(3), 112, 4);
  o.random_seed = 5;
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  if (!use_mode(bb)) {
    grad_backbone_free(bb);
    return;
  }
  enum { N = 11 }; /* more than one group of 8 */
  const size_t in = 3 * 112 * 112;
  ck_assert_int_eq(grad_backbone_feature_height(bb), 28);
  const size_t feat = (size_t)grad_backbone_feature_channels(bb) * 28 * 28;
  float *x = malloc(N * in * sizeof(float)), *batch = malloc(N * feat * sizeof(float));
  float *one = malloc(feat * sizeof(float));
  grad__rng rng;
  grad__rng_seed(&rng, 99);
  grad__rng_fill_normal(&rng, x, N * in, 0.0, 1.0);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, x, N, batch), GRAD_OK);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(grad_backbone_features(bb, ws, x + i * in, 1, one), GRAD_OK);
    ck_assert_close_rel(batch + i * feat, one, feat, 1e-6);
  }
  ck_assert_int_eq(grad_backbone_features(bb, ws, x, 0, one), GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_backbone_features(bb, NULL, x, 1, one), GRAD_E_INVALID_ARG);
  grad_workspace_free(ws);
  free(x), free(batch), free(one);
  grad_backbone_free(bb);
}
END_TEST

/* docs/guide.md promises features bit for bit identical on 1 and 2 threads
 * (each workspace with its own count) on every fp32 engine. */
START_TEST(features_identical_on_one_and_two_threads) {
  mode = _i;
  grad_backbone_options o;
  options(&o, "wide_resnet50_2", L(2) | L(3), 64, 8);
  o.random_seed = 3;
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  if (!use_mode(bb)) {
    grad_backbone_free(bb);
    return;
  }
  enum { N = 3 };
  const size_t in = 3 * 64 * 64, feat = (size_t)1536 * 8 * 8;
  float *x = malloc(N * in * sizeof(float)), *a = malloc(N * feat * sizeof(float)),
        *b = malloc(N * feat * sizeof(float));
  grad__rng rng;
  grad__rng_seed(&rng, 4);
  grad__rng_fill_normal(&rng, x, N * in, 0.0, 1.0);
  grad_workspace *one = NULL, *two = NULL;
  ck_assert_int_eq(grad_workspace_create(&one), GRAD_OK);
  ck_assert_int_eq(grad_workspace_create(&two), GRAD_OK);
  grad_workspace_threads_set(one, 1);
  grad_workspace_threads_set(two, 2);
  ck_assert_int_eq(grad_workspace_threads_get(two), 2);
  ck_assert_int_eq(grad_backbone_features(bb, one, x, N, a), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, two, x, N, b), GRAD_OK);
  ck_assert_mem_eq(a, b, N * feat * sizeof(float));
  grad_workspace_free(one);
  grad_workspace_free(two);
  free(x), free(a), free(b);
  grad_backbone_free(bb);
}
END_TEST

/* The engine and precision choice: defaults, what is refused and why. */
START_TEST(compute_choice_is_checked) {
  grad_backbone_options o;
  options(&o, "resnet18", L(2), 64, 8);
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert_int_eq(grad_backbone_engine(bb), grad_engine_available(GRAD_ENGINE_ONEDNN)
                                                 ? GRAD_ENGINE_ONEDNN
                                                 : GRAD_ENGINE_IM2COL);
  ck_assert_int_eq(grad_backbone_precision(bb), GRAD_PRECISION_FP32);
  ck_assert_int_eq(grad_backbone_compute_set(bb, (grad_engine)7, GRAD_PRECISION_FP32),
                   GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_backbone_compute_set(bb, GRAD_ENGINE_AUTO, (grad_precision)9),
                   GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_backbone_compute_set(NULL, GRAD_ENGINE_AUTO, GRAD_PRECISION_FP32),
                   GRAD_E_INVALID_ARG);
  ck_assert_int_eq(grad_backbone_compute_set(bb, GRAD_ENGINE_IM2COL, GRAD_PRECISION_BF16),
                   GRAD_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "bf16"));
  ck_assert_int_eq(grad_backbone_engine(bb) == GRAD_ENGINE_AUTO, 0); /* unchanged */
  grad_status bf16 = grad_backbone_compute_set(bb, GRAD_ENGINE_AUTO, GRAD_PRECISION_BF16);
  ck_assert_int_eq(bf16, grad_precision_available(GRAD_PRECISION_BF16) ? GRAD_OK
                                                                      : GRAD_E_UNSUPPORTED);
  ck_assert_str_eq(grad_precision_name(GRAD_PRECISION_BF16), "bf16");
  ck_assert_str_eq(grad_engine_name(GRAD_ENGINE_IM2COL), "im2col");
  grad_backbone_free(bb);
}
END_TEST

/* After a call has sized the workspace, the next one allocates nothing. */
START_TEST(no_allocation_after_the_first_call) {
  grad_backbone_options o;
  options(&o, "resnet34", L(2) | L(3), 64, 8);
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  float x[2 * 3 * 64 * 64], out[2 * 384 * 64];
  for (int i = 0; i < 2 * 3 * 64 * 64; i++) x[i] = (float)cos(i * 0.003);
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, x, 2, out), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, x, 2, out), GRAD_OK); /* merges the arena */
  grad__alloc_fail_after(0);
  ck_assert_int_eq(grad_backbone_features(bb, ws, x, 2, out), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, x, 1, out), GRAD_OK);
  grad__alloc_fail_after(-1);
  grad_workspace_free(ws);
  grad_backbone_free(bb);
}
END_TEST

START_TEST(allocation_failures_are_clean) {
  grad_backbone_options o;
  options(&o, "resnet18", L(2), 64, 8);
  for (long k = 0; k < 8; k++) {
    grad_backbone *bb = NULL;
    grad__alloc_fail_after(k);
    grad_status st = grad_backbone_create(&o, &bb);
    grad__alloc_fail_after(-1);
    if (st == GRAD_OK) {
      grad_backbone_free(bb);
      break;
    }
    ck_assert_int_eq(st, GRAD_E_NOMEM);
    ck_assert_ptr_null(bb);
  }
}
END_TEST

static void roundtrip(grad_backbone *bb) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__backbone_write(bb, w, "backbone."), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  ck_assert_str_eq(grad__st_meta(f, "backbone.arch"), grad_backbone_arch(bb));
  ck_assert_ptr_nonnull(grad__st_find(f, "backbone.layer1.0.conv1.bias"));
  grad_backbone *back = NULL;
  ck_assert_msg(grad__backbone_read(f, "backbone.", &back) == GRAD_OK, "%s", grad_last_error());
  grad__st_close(f);
  ck_assert_str_eq(grad_backbone_arch(back), grad_backbone_arch(bb));
  ck_assert_uint_eq(grad_backbone_layers(back), grad_backbone_layers(bb));
  ck_assert_int_eq(grad_backbone_input_size(back), grad_backbone_input_size(bb));
  ck_assert_int_eq(grad_backbone_output_stride(back), grad_backbone_output_stride(bb));
  ck_assert_uint_eq(back->storage_floats, bb->storage_floats);
  ck_assert_mem_eq(back->storage, bb->storage, bb->storage_floats * sizeof(float));
  ck_assert_ptr_nonnull(strstr(grad_backbone_weights_source(back), "model file"));
  grad_backbone_free(back);
}

START_TEST(model_file_round_trip) {
  grad_backbone_options o;
  options(&o, "resnet18", L(1) | L(3), 48, 16);
  o.random_seed = 21;
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  roundtrip(bb);
  grad_backbone_free(bb);
  options(&o, NULL, L(2), 32, 8);
  ck_assert_int_eq(grad__backbone_create_arch(&tiny_arch, &o, &bb), GRAD_OK);
  roundtrip(bb);
  grad_backbone_free(bb);
}
END_TEST

START_TEST(model_file_errors) {
  const char *dir = test_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  grad_backbone_options o;
  options(&o, "resnet18", L(2), 64, 8);
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__backbone_write(bb, w, "bb."), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_meta(w, "bb.layers", "2,9"), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad_backbone_free(bb);
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  grad_backbone *back = (grad_backbone *)&o;
  const char *layers[] = {"bb.layers", "2,9", NULL};
  expect_error(grad__backbone_read(f, "bb.", &back), GRAD_E_FORMAT, layers);
  ck_assert_ptr_null(back);
  const char *arch[] = {"other.arch", NULL};
  expect_error(grad__backbone_read(f, "other.", &back), GRAD_E_MISSING, arch);
  grad__st_close(f);
}
END_TEST

int main(void) {
  Suite *s = suite_create("backbone");
  TCase *golden = tcase_create("golden");
  tcase_set_timeout(golden, 60);
  tcase_add_loop_test(golden, resnet18_matches_pytorch, 0, (int)(sizeof modes / sizeof modes[0]));
  tcase_add_loop_test(golden, bottleneck_matches_pytorch, 0, (int)(sizeof modes / sizeof modes[0]));
  tcase_add_loop_test(golden, seeded_wide_resnet50_2_matches_pytorch, 0,
                      (int)(sizeof modes / sizeof modes[0]));
  suite_add_tcase(s, golden);
  TCase *errors = tcase_create("errors");
  tcase_set_timeout(errors, 60);
  tcase_add_test(errors, missing_tensor_is_named);
  tcase_add_test(errors, wrong_shape_is_named_with_both_shapes);
  tcase_add_test(errors, nan_and_inf_weights_are_named);
  tcase_add_test(errors, negative_running_variance_is_refused);
  tcase_add_test(errors, file_of_another_architecture_is_refused);
  tcase_add_test(errors, bad_options_are_refused);
  suite_add_tcase(s, errors);
  TCase *rest = tcase_create("behaviour");
  tcase_set_timeout(rest, 60);
  tcase_add_test(rest, align_corners_resize_hand_cases);
  tcase_add_test(rest, maxpool_matches_definition);
  tcase_add_test(rest, every_architecture_builds_with_the_right_shapes);
  tcase_add_test(rest, later_stages_are_not_built);
  tcase_add_test(rest, random_init_follows_torchvision);
  tcase_add_loop_test(rest, batch_matches_single_images, 0, 2); /* the fp32 modes */
  tcase_add_loop_test(rest, features_identical_on_one_and_two_threads, 0, 2);
  tcase_add_test(rest, compute_choice_is_checked);
  tcase_add_test(rest, no_allocation_after_the_first_call);
  tcase_add_test(rest, allocation_failures_are_clean);
  tcase_add_test(rest, model_file_round_trip);
  tcase_add_test(rest, model_file_errors);
  suite_add_tcase(s, rest);
  return test_run_suite(s);
}
