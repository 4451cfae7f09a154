/*
 * The EfficientNet backbone: its depthwise/epilogue kernels (every CPU build
 * against the plain definitions), both weight layouts against PyTorch
 * goldens (tests/make_efficientnet_golden.py, run by hand with
 * /usr/bin/python3: torchvision 0.14's EfficientNet and a restatement of
 * efficientnet_pytorch with static "same" padding, BatchNorm statistics
 * estimated on real images) at 48x48, 41x41 and 36x53, the shapes of
 * b0..b7, weight-file errors and model-file round trips. Tolerance for every
 * golden: max|diff| <= 1e-4 * max|ref| per layer.
 */
#define GRAD_EXPERIMENTAL /* grad_kernels_isa (not yet promised) */
#include <math.h>

#include "depthwise_fused.h"
#include "efficientnet_internal.h"
#include "rng.h"
#include "golden_util.h"

static const double golden_tol = 1e-4;

static const grad__effnet_arch tv_tiny = {"effnet_tv_tiny", 0.25, 1.0, GRAD__EFFNET_TORCHVISION,
                                          1e-5};
static const grad__effnet_arch same_tiny = {"effnet_same_tiny", 0.25, 1.2, GRAD__EFFNET_SAME,
                                            1e-3};

#define L(k) GRAD_BACKBONE_LAYER(k)
#define ALL_LAYERS (L(1) | L(2) | L(3) | L(4) | L(5))




static grad_backbone *create(const grad__effnet_arch *arch, const char *weights, unsigned layers,
                             int size, int stride) {
  grad_backbone_options o;
  grad_backbone_options_init(&o, sizeof o);
  o.layers = layers;
  o.input_size = size;
  o.output_stride = stride;
  o.weights_path = weights ? test_fixture(weights) : NULL;
  grad_backbone *bb = NULL;
  grad_status st = grad__effnet_create(arch, &o, &bb);
  ck_assert_msg(st == GRAD_OK, "%s", grad_last_error());
  return bb;
}

/* Every built layer of a golden file's two images of h x w, through the
 * internal (non-square) entry. */
static void check_layers(const grad__effnet_arch *arch, const char *weights, const char *golden,
                         int h, int w) {
  grad_backbone *bb = create(arch, weights, ALL_LAYERS, 64, 8);
  grad__st_file *f = golden_file_open(golden);
  float *input = golden_tensor(f, "input", NULL);
  float *stages[6] = {NULL};
  size_t count[6] = {0};
  for (int k = 1; k <= 5; k++) {
    int hk = grad__effnet_map_size(h, 1 << k), wk = grad__effnet_map_size(w, 1 << k);
    count[k] = (size_t)2 * grad_backbone_stage_channels(bb, k) * hk * wk;
    stages[k] = malloc(count[k] * sizeof(float));
  }
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  fprintf(stderr, "%s (%s build):\n", golden, grad_kernels_isa());
  ck_assert_int_eq(grad__effnet_stages(bb, ws, input, 2, h, w, stages), GRAD_OK);
  char name[16];
  for (int k = 1; k <= 5; k++) {
    snprintf(name, sizeof name, "layer%d", k);
    golden_expect(f, name, stages[k], count[k], golden_tol);
    free(stages[k]);
  }
  grad_workspace_free(ws);
  free(input);
  grad__st_close(f);
  grad_backbone_free(bb);
}

/* The public path: layers 3 and 4 at stride 8, 48 x 48, against the
 * golden neck; only stages up to 5 are built. */
static void check_neck(const grad__effnet_arch *arch, const char *weights, const char *golden) {
  grad_backbone *bb = create(arch, weights, L(3) | L(4), 48, 8);
  ck_assert_int_eq(bb->effnet->last_stage, 5);
  ck_assert_int_eq(bb->effnet->blocks[bb->effnet->block_count - 1].stage, 5);
  grad__st_file *f = golden_file_open(golden);
  float *input = golden_tensor(f, "input", NULL);
  int c = grad_backbone_feature_channels(bb), s = grad_backbone_feature_height(bb);
  ck_assert_int_eq(s, 6);
  size_t count = (size_t)2 * c * s * s;
  float *out = malloc(count * sizeof(float));
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, input, 2, out), GRAD_OK);
  golden_expect(f, "neck_l34_s8", out, count, golden_tol);
  grad_workspace_free(ws);
  free(out);
  free(input);
  grad__st_close(f);
  grad_backbone_free(bb);
}

START_TEST(torchvision_layout_matches_pytorch) {
  check_layers(&tv_tiny, "efficientnet/tv_weights.safetensors",
               "efficientnet/tv_s48x48.safetensors", 48, 48);
  check_layers(&tv_tiny, "efficientnet/tv_weights.safetensors",
               "efficientnet/tv_s41x41.safetensors", 41, 41);
  check_layers(&tv_tiny, "efficientnet/tv_weights.safetensors",
               "efficientnet/tv_s36x53.safetensors", 36, 53);
  check_neck(&tv_tiny, "efficientnet/tv_weights.safetensors",
             "efficientnet/tv_s48x48.safetensors");
}
END_TEST

START_TEST(same_padding_layout_matches_pytorch) {
  check_layers(&same_tiny, "efficientnet/same_weights.safetensors",
               "efficientnet/same_s48x48.safetensors", 48, 48);
  check_layers(&same_tiny, "efficientnet/same_weights.safetensors",
               "efficientnet/same_s41x41.safetensors", 41, 41);
  check_layers(&same_tiny, "efficientnet/same_weights.safetensors",
               "efficientnet/same_s36x53.safetensors", 36, 53);
  check_neck(&same_tiny, "efficientnet/same_weights.safetensors",
             "efficientnet/same_s48x48.safetensors");
}
END_TEST

/* Every CPU build the machine has gives the golden result too. */
START_TEST(every_cpu_build_matches_pytorch) {
  static const char *const isas[] = {"avx512", "avx2", "baseline"};
  for (size_t i = 0; i < 3; i++) {
    if (!grad__depthwise_force_isa(isas[i])) {
      fprintf(stderr, "SKIP %s build: not on this CPU\n", isas[i]);
      continue;
    }
    check_layers(&same_tiny, "efficientnet/same_weights.safetensors",
                 "efficientnet/same_s41x41.safetensors", 41, 41);
  }
  grad__depthwise_force_isa(NULL);
}
END_TEST

/* ---- Kernels ---------------------------------------------------------------- */

static void fill(grad__rng *rng, float *x, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(scale * (2.0 * grad__rng_uniform(rng) - 1.0));
}

START_TEST(depthwise_builds_match_the_definition) {
  static const char *const isas[] = {"avx512", "avx2", "baseline"};
  /* kernel, stride, h, w, pad_top, pad_left (TF same for even sizes is 0/1,
   * torchvision k/2), output from the padding as each layout gets it. */
  static const int cases[][6] = {{3, 1, 7, 9, 1, 1},   {3, 2, 8, 8, 0, 0},  {3, 2, 9, 9, 1, 1},
                                 {5, 1, 6, 35, 2, 2},  {5, 2, 12, 40, 1, 1}, {5, 2, 13, 17, 2, 2},
                                 {3, 1, 1, 1, 1, 1},   {5, 2, 2, 3, 1, 2},  {3, 2, 33, 70, 1, 1},
                                 /* several bands; rows too wide for a band: the row path */
                                 {3, 1, 120, 130, 1, 1}, {5, 2, 121, 130, 1, 2},
                                 {3, 2, 112, 112, 0, 0}, {3, 1, 4, 3000, 1, 1},
                                 {5, 2, 5, 2999, 2, 2}};
  grad__rng rng;
  grad__rng_seed(&rng, 5);
  const int channels = 5;
  for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
    if (!grad__depthwise_force_isa(isas[i])) continue;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
      const int *p = cases[c];
      grad__dw_shape s = {p[0], p[1], p[2], p[3], (p[2] + p[1] - 1) / p[1],
                          (p[3] + p[1] - 1) / p[1], p[4], p[5]};
      size_t in = (size_t)channels * s.h * s.w, out = (size_t)channels * s.oh * s.ow;
      float *x = malloc(in * sizeof(float)), *w = malloc(channels * 25 * sizeof(float));
      ck_assert(x && w);
      float *y = malloc(out * sizeof(float)), *ref = malloc(out * sizeof(float));
      float b[5], sums[5], ref_sums[5];
      fill(&rng, x, in, 3.0), fill(&rng, w, (size_t)channels * s.kernel * s.kernel, 1.0);
      fill(&rng, b, channels, 1.0);
      /* Channels [1, 4) only: the others must stay untouched. */
      for (size_t j = 0; j < out; j++) y[j] = ref[j] = -7.0f;
      sums[0] = ref_sums[0] = sums[4] = ref_sums[4] = -7.0f;
      grad__depthwise_swish(&s, x, w, b, 1, 4, y, sums);
      grad__depthwise_swish_reference(&s, x, w, b, 1, 4, ref, ref_sums);
      ck_assert_msg(test_max_abs_diff(y, ref, out, NULL) <= 1e-5,
                    "%s case %zu: max|diff| %g", isas[i], c, test_max_abs_diff(y, ref, out, NULL));
      /* A sum of oh * ow floats: float rounding grows with the count. */
      double max_y;
      (void)test_max_abs_diff(ref, ref, out, &max_y);
      ck_assert_msg(test_max_abs_diff(sums, ref_sums, 5, NULL) <=
                        1e-6 * s.oh * s.ow * (1.0 + max_y),
                    "%s case %zu sums", isas[i], c);
      ck_assert(y[0] == -7.0f && sums[0] == -7.0f && sums[4] == -7.0f);
      free(x), free(w), free(y), free(ref);
    }
  }
  grad__depthwise_force_isa(NULL);
}
END_TEST

START_TEST(epilogue_builds_match_the_definition) {
  static const char *const isas[] = {"avx512", "avx2", "baseline"};
  grad__rng rng;
  grad__rng_seed(&rng, 9);
  const int rows = 6;
  const size_t ld = 75, cols = 71; /* not a multiple of any vector width */
  float *y = malloc(rows * ld * sizeof(float)), *ref = malloc(rows * ld * sizeof(float));
  float *res = malloc(rows * ld * sizeof(float)), bias[6];
  for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
    if (!grad__depthwise_force_isa(isas[i])) continue;
    for (int mode = 0; mode < 4; mode++) {
      fill(&rng, y, rows * ld, 100.0); /* swish far into both tails */
      memcpy(ref, y, rows * ld * sizeof(float));
      fill(&rng, res, rows * ld, 2.0), fill(&rng, bias, rows, 1.0);
      const float *r = mode & 1 ? res : NULL;
      grad__bias_act_rows(y, ld, cols, 1, 5, bias, r, mode >> 1);
      grad__bias_act_rows_reference(ref, ld, cols, 1, 5, bias, r, mode >> 1);
      for (size_t j = 0; j < rows * ld; j++)
        ck_assert_msg(fabsf(y[j] - ref[j]) <= 1e-6f * (1.0f + fabsf(ref[j])),
                      "%s mode %d at %zu: %g vs %g", isas[i], mode, j, y[j], ref[j]);
    }
  }
  grad__depthwise_force_isa(NULL);
  free(y), free(ref), free(res);
}
END_TEST

START_TEST(tanh_builds_match_tanhf) {
  static const char *const isas[] = {"avx512", "avx2", "baseline"};
  /* Every region: 0, the polynomial's, the boundary at 0.625, the exp
   * form, saturation; odd lengths so that vector tails run. */
  enum { N = 70001 };
  float *v = malloc(N * sizeof(float)), *ref = malloc(N * sizeof(float));
  ck_assert(v && ref);
  for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
    if (!grad__depthwise_force_isa(isas[i])) continue;
    for (int k = 0; k < N; k++) v[k] = ref[k] = (float)(k - N / 2) * 3e-4f; /* -10.5 .. 10.5 */
    v[0] = ref[0] = 0.625f, v[1] = ref[1] = -0.625f, v[2] = ref[2] = 0.0f;
    v[3] = ref[3] = 1e-30f, v[4] = ref[4] = -90.0f, v[5] = ref[5] = 1e4f;
    grad__tanh_inplace(v, N);
    grad__tanh_reference(ref, N);
    for (int k = 0; k < N; k++)
      ck_assert_msg(fabsf(v[k] - ref[k]) <= 4e-7f * fabsf(ref[k]) + 1e-37f,
                    "%s: tanh(%g) = %.9g, tanhf %.9g", isas[i], (k - N / 2) * 3e-4, v[k],
                    ref[k]);
    float nan = NAN;
    grad__tanh_inplace(&nan, 1);
    ck_assert(isnan(nan));
  }
  grad__depthwise_force_isa(NULL);
  free(v), free(ref);
}
END_TEST

/* ---- Architectures ------------------------------------------------------------ */

START_TEST(b0_to_b7_have_the_published_shapes) {
  static const struct {
    const char *name;
    int blocks, stem, layer[6];
  } nets[] = {
    {"efficientnet_b0", 16, 32, {0, 16, 24, 40, 112, 320}},
    {"efficientnet_b1", 23, 32, {0, 16, 24, 40, 112, 320}},
    {"efficientnet_b2", 23, 32, {0, 16, 24, 48, 120, 352}},
    {"efficientnet_b3", 26, 40, {0, 24, 32, 48, 136, 384}},
    {"efficientnet_b4", 32, 48, {0, 24, 32, 56, 160, 448}},
    {"efficientnet_b5", 39, 48, {0, 24, 40, 64, 176, 512}},
    {"efficientnet_b6", 45, 56, {0, 32, 40, 72, 200, 576}},
    {"efficientnet_b7", 55, 64, {0, 32, 48, 80, 224, 640}},
  };
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
    for (int same = 0; same < 2; same++) {
      char name[64];
      snprintf(name, sizeof name, "%s%s", nets[i].name, same ? "_same" : "");
      const grad__effnet_arch *a = grad__effnet_arch_find(name);
      ck_assert_msg(a != NULL, "%s", name);
      grad_backbone_options o;
      grad_backbone_options_init(&o, sizeof o);
      o.arch = name;
      o.layers = ALL_LAYERS;
      o.input_size = 64;
      grad_backbone *bb = NULL;
      ck_assert_msg(grad__effnet_build(a, &o, &bb) == GRAD_OK, "%s", grad_last_error());
      ck_assert_int_eq(bb->effnet->block_count, nets[i].blocks);
      ck_assert_int_eq(bb->effnet->stage_channels[0], nets[i].stem);
      for (int k = 1; k <= 5; k++)
        ck_assert_int_eq(grad_backbone_stage_channels(bb, k), nets[i].layer[k]);
      grad_backbone_free(bb);
    }
  /* b4 at 224 with layers 3 and 4 (the paper's): 216 channels at 28 x 28,
   * blocks up to stage 5 only (efficientnet_pytorch's blocks 0..21). */
  grad_backbone_options o;
  grad_backbone_options_init(&o, sizeof o);
  o.arch = "efficientnet_b4_same";
  o.layers = L(3) | L(4);
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert_int_eq(grad_backbone_feature_channels(bb), 216);
  ck_assert_int_eq(grad_backbone_feature_height(bb), 28);
  ck_assert_int_eq(bb->effnet->block_count, 22);
  ck_assert_str_eq(bb->effnet->convs[bb->effnet->conv_count - 1].name, "_blocks.21._project_conv");
  ck_assert_str_eq(grad_backbone_arch(bb), "efficientnet_b4_same");
  grad_backbone_free(bb);
  o.arch = "efficientnet_b4";
  o.layers = L(1);
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert_str_eq(bb->effnet->convs[bb->effnet->conv_count - 1].name,
                   "features.1.1.block.2.0");
  grad_backbone_free(bb);
  o.layers = L(6);
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "1..5"));
}
END_TEST

/* ---- Weight files ------------------------------------------------------------------ */

/* Copies the tv fixture weights into dir/name, leaving out `drop`. */
static const char *copy_weights(const char *name, const char *drop, const char *arch) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
  grad__st_file *f = golden_file_open("efficientnet/tv_weights.safetensors");
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  for (size_t i = 0; i < grad__st_count(f); i++) {
    const grad__st_tensor *t = grad__st_at(f, i);
    if (drop && !strcmp(t->name, drop)) continue;
    float *data = golden_tensor(f, t->name, NULL);
    ck_assert_int_eq(grad__st_writer_add(w, t->name, t->ndim, t->shape, data), GRAD_OK);
    free(data);
  }
  ck_assert_int_eq(grad__st_writer_meta(w, "arch", arch), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_close(f);
  return path;
}

START_TEST(missing_tensor_and_wrong_arch_are_named) {
  grad_backbone_options o;
  grad_backbone_options_init(&o, sizeof o);
  o.layers = L(3);
  o.input_size = 48;
  o.weights_path = copy_weights("drop.safetensors", "features.2.1.block.2.fc2.bias",
                                "effnet_tv_tiny");
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad__effnet_create(&tv_tiny, &o, &bb), GRAD_E_MISSING);
  ck_assert_ptr_null(bb);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "features.2.1.block.2.fc2.bias"));
  /* A tensor of a stage not built may be absent. */
  o.weights_path = copy_weights("late.safetensors", "features.5.0.block.1.0.weight",
                                "effnet_tv_tiny");
  ck_assert_int_eq(grad__effnet_create(&tv_tiny, &o, &bb), GRAD_OK);
  grad_backbone_free(bb);
  o.weights_path = copy_weights("other.safetensors", NULL, "efficientnet_b0");
  ck_assert_int_eq(grad__effnet_create(&tv_tiny, &o, &bb), GRAD_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "efficientnet_b0"));
  /* The other layout's names are not there. */
  o.weights_path = test_fixture("efficientnet/tv_weights.safetensors");
  grad__effnet_arch renamed = same_tiny;
  renamed.name = "effnet_tv_tiny";
  ck_assert_int_eq(grad__effnet_create(&renamed, &o, &bb), GRAD_E_MISSING);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "_conv_stem.weight"));
}
END_TEST

/* ---- Model files, batches, random weights --------------------------------------- */

static float *features(const grad_backbone *bb, const float *images, int n) {
  size_t count = (size_t)n * grad_backbone_feature_channels(bb) *
                 grad_backbone_feature_height(bb) * grad_backbone_feature_width(bb);
  float *out = malloc(count * sizeof(float));
  grad_workspace *ws = NULL;
  ck_assert_int_eq(grad_workspace_create(&ws), GRAD_OK);
  ck_assert_int_eq(grad_backbone_features(bb, ws, images, n, out), GRAD_OK);
  grad_workspace_free(ws);
  return out;
}

START_TEST(model_file_round_trip_and_batches) {
  grad_backbone *bb = create(&same_tiny, "efficientnet/same_weights.safetensors", L(2) | L(5),
                             41, 16);
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", test_tmpdir());
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  ck_assert_int_eq(grad__backbone_write(bb, w, "backbone."), GRAD_OK);
  ck_assert_int_eq(grad__st_writer_save(w, path), GRAD_OK);
  grad__st_writer_free(w);
  grad__st_file *f = NULL;
  ck_assert_int_eq(grad__st_open(path, &f), GRAD_OK);
  grad_backbone *back = NULL;
  ck_assert_msg(grad__backbone_read(f, "backbone.", &back) == GRAD_OK, "%s", grad_last_error());
  grad__st_close(f);
  ck_assert_ptr_nonnull(back->effnet);
  ck_assert_str_eq(grad_backbone_arch(back), "effnet_same_tiny");
  ck_assert_uint_eq(grad_backbone_layers(back), L(2) | L(5));
  ck_assert_uint_eq(back->storage_floats, bb->storage_floats);
  ck_assert_mem_eq(back->storage, bb->storage, bb->storage_floats * sizeof(float));

  grad__st_file *g = golden_file_open("efficientnet/same_s41x41.safetensors");
  float *input = golden_tensor(g, "input", NULL);
  grad__st_close(g);
  float *both = features(bb, input, 2), *again = features(back, input, 2);
  float *second = features(bb, input + 3 * 41 * 41, 1);
  size_t one = (size_t)grad_backbone_feature_channels(bb) * 3 * 3;
  ck_assert_int_eq(grad_backbone_feature_height(bb), 3);
  ck_assert_mem_eq(both, again, 2 * one * sizeof(float));
  ck_assert_mem_eq(both + one, second, one * sizeof(float));
  free(both), free(again), free(second), free(input);
  grad_backbone_free(back);
  grad_backbone_free(bb);
}
END_TEST

START_TEST(random_weights_give_finite_varied_features) {
  grad_backbone_options o;
  grad_backbone_options_init(&o, sizeof o);
  o.arch = "efficientnet_b0";
  o.layers = L(3) | L(4);
  o.input_size = 64;
  o.random_seed = 3;
  grad_backbone *bb = NULL;
  ck_assert_int_eq(grad_backbone_create(&o, &bb), GRAD_OK);
  ck_assert_str_eq(grad_backbone_weights_source(bb), "random (seed 3)");
  grad__rng rng;
  grad__rng_seed(&rng, 1);
  float *image = malloc(3 * 64 * 64 * sizeof(float));
  fill(&rng, image, 3 * 64 * 64, 2.0);
  float *out = features(bb, image, 1);
  size_t n = (size_t)grad_backbone_feature_channels(bb) * 8 * 8;
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    ck_assert(isfinite(out[i]));
    lo = fmin(lo, out[i]), hi = fmax(hi, out[i]);
  }
  ck_assert(hi > lo);
  free(out), free(image);
  grad_backbone_free(bb);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("efficientnet");
  TCase *golden = tcase_create("golden");
  tcase_set_timeout(golden, 60);
  tcase_add_test(golden, torchvision_layout_matches_pytorch);
  tcase_add_test(golden, same_padding_layout_matches_pytorch);
  tcase_add_test(golden, every_cpu_build_matches_pytorch);
  suite_add_tcase(s, golden);
  TCase *rest = tcase_create("rest");
  tcase_set_timeout(rest, 60);
  tcase_add_test(rest, depthwise_builds_match_the_definition);
  tcase_add_test(rest, epilogue_builds_match_the_definition);
  tcase_add_test(rest, tanh_builds_match_tanhf);
  tcase_add_test(rest, b0_to_b7_have_the_published_shapes);
  tcase_add_test(rest, missing_tensor_and_wrong_arch_are_named);
  tcase_add_test(rest, model_file_round_trip_and_batches);
  tcase_add_test(rest, random_weights_give_finite_varied_features);
  suite_add_tcase(s, rest);
  return s;
}

int main(void) { return test_run_suite(suite()); }
