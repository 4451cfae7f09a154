/*
 * The struct_size policy, seen from binaries built against other headers.
 * Each option struct is declared here as an older libgrad header had it (a
 * prefix of today's fields) and as a newer one might (today's fields plus
 * one more), and passed to the public library through its real calls:
 *  - an older struct is filled by _init without a byte written past its
 *    end, and the fields it lacks take their defaults (checked against a
 *    run with today's struct holding those defaults explicitly);
 *  - a newer struct is accepted when its extra field is zero and refused,
 *    naming the struct, when it is not;
 *  - the output struct grad_eval_summary gets only the fields it covers.
 * Links the shared library only: no internal header is included.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_*, grad_store_* (not yet promised) */
#include <grad/grad.h>
#include <stddef.h>

#include "testutil.h"

/* Asserts that an older definition's fields sit where today's do. */
#define SAME_OFFSET(old, cur, field) \
  _Static_assert(offsetof(old, field) == offsetof(cur, field), #field " moved")

/* An older struct followed by bytes _init must not touch. */
#define GUARD 0xA5
static int guard_intact(const unsigned char *g, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (g[i] != GUARD) return 0;
  return 1;
}

static void expect_refused(grad_status s, const char *name) {
  ck_assert_int_eq(s, GRAD_E_INVALID_ARG);
  ck_assert_msg(strstr(grad_last_error(), name), "message '%s' does not name %s",
                grad_last_error(), name);
}

/* ---- grad_backbone_options -------------------------------------------- */

typedef struct old_backbone_options { /* before input_size and output_stride */
  size_t struct_size;
  const char *arch;
  const char *weights_path;
  uint64_t random_seed;
  unsigned layers;
} old_backbone_options;
SAME_OFFSET(old_backbone_options, grad_backbone_options, layers);

typedef struct new_backbone_options {
  grad_backbone_options known;
  uint64_t future;
} new_backbone_options;

START_TEST(backbone_options_older_and_newer) {
  struct {
    old_backbone_options o;
    unsigned char guard[64];
  } old;
  memset(&old, GUARD, sizeof old);
  grad_backbone_options_init((grad_backbone_options *)&old.o, sizeof old.o);
  ck_assert(guard_intact(old.guard, sizeof old.guard));
  ck_assert_uint_eq(old.o.struct_size, sizeof old.o);
  ck_assert_str_eq(old.o.arch, "resnet18");
  old.o.layers = GRAD_BACKBONE_LAYER(1);
  grad_backbone *bb = NULL;
  ck_assert_msg(grad_backbone_create((grad_backbone_options *)&old.o, &bb) == GRAD_OK, "%s",
                grad_last_error());
  ck_assert_uint_eq(grad_backbone_layers(bb), GRAD_BACKBONE_LAYER(1));
  ck_assert_int_eq(grad_backbone_input_size(bb), 224); /* the missing fields' defaults */
  ck_assert_int_eq(grad_backbone_output_stride(bb), 8);
  grad_backbone_free(bb);

  new_backbone_options nw;
  grad_backbone_options_init((grad_backbone_options *)&nw, sizeof nw);
  ck_assert_uint_eq(nw.known.struct_size, sizeof nw);
  ck_assert_uint_eq(nw.future, 0);
  nw.known.layers = GRAD_BACKBONE_LAYER(1);
  nw.known.input_size = 64;
  ck_assert_int_eq(grad_backbone_create(&nw.known, &bb), GRAD_OK);
  ck_assert_int_eq(grad_backbone_input_size(bb), 64);
  grad_backbone_free(bb);
  nw.future = 7;
  expect_refused(grad_backbone_create(&nw.known, &bb), "grad_backbone_options");
  ck_assert_ptr_null(bb);

  old.o.struct_size = 4; /* smaller than any version: not initialised */
  expect_refused(grad_backbone_create((grad_backbone_options *)&old.o, &bb),
                 "grad_backbone_options");
}
END_TEST

/* ---- grad_calibration_options ----------------------------------------- */

typedef struct old_calibration_options { /* before margin */
  size_t struct_size;
  double quantile;
} old_calibration_options;
SAME_OFFSET(old_calibration_options, grad_calibration_options, quantile);

typedef struct new_calibration_options {
  grad_calibration_options known;
  double future;
} new_calibration_options;

START_TEST(calibration_options_older_and_newer) {
  /* Three scores: too few for the 0.99 quantile, so max + margin * range. */
  const float scores[] = {0.0f, 1.0f, 2.0f};
  grad_head *head = NULL;
  ck_assert_int_eq(grad_head_create(64, &head), GRAD_OK);
  struct {
    old_calibration_options o;
    unsigned char guard[32];
  } old;
  memset(&old, GUARD, sizeof old);
  grad_calibration_options_init((grad_calibration_options *)&old.o, sizeof old.o);
  ck_assert(guard_intact(old.guard, sizeof old.guard));
  ck_assert_double_eq(old.o.quantile, 0.99);
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 3, 0,
                                              (grad_calibration_options *)&old.o),
                   GRAD_OK);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 2.0 + 0.1 * 2.0, 1e-9);

  new_calibration_options nw;
  grad_calibration_options_init(&nw.known, sizeof nw);
  nw.known.margin = 0.5;
  ck_assert_int_eq(grad_head_calibrate_normal(head, scores, NULL, 3, 0, &nw.known), GRAD_OK);
  ck_assert_double_eq_tol(grad_head_image_threshold(head), 2.0 + 0.5 * 2.0, 1e-9);
  nw.future = 1.0;
  expect_refused(grad_head_calibrate_normal(head, scores, NULL, 3, 0, &nw.known),
                 "grad_calibration_options");
  grad_head_free(head);
}
END_TEST

/* ---- grad_synth_options ----------------------------------------------- */

typedef struct old_synth_options { /* before test_count and category */
  size_t struct_size;
  const char *out_dir;
  uint64_t seed;
  int size;
  int train_count;
} old_synth_options;
SAME_OFFSET(old_synth_options, grad_synth_options, train_count);

typedef struct new_synth_options {
  grad_synth_options known;
  const char *future;
} new_synth_options;

static int exists(const char *dir, const char *file) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "rb");
  if (f) fclose(f);
  return f != NULL;
}

START_TEST(synth_options_older_and_newer) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/old", test_tmpdir());
  struct {
    old_synth_options o;
    unsigned char guard[32];
  } old;
  memset(&old, GUARD, sizeof old);
  grad_synth_options_init((grad_synth_options *)&old.o, sizeof old.o);
  ck_assert(guard_intact(old.guard, sizeof old.guard));
  old.o.out_dir = dir;
  old.o.size = 32;
  old.o.train_count = 1;
  ck_assert_msg(grad_synth_write((grad_synth_options *)&old.o) == GRAD_OK, "%s",
                grad_last_error());
  /* test_count took its default (20: 5 good) and category its (all). */
  ck_assert(exists(dir, "weave/test/good/004.png"));
  ck_assert(!exists(dir, "weave/test/good/005.png"));
  ck_assert(exists(dir, "washer/train/good/000.png"));

  new_synth_options nw;
  grad_synth_options_init(&nw.known, sizeof nw);
  snprintf(dir, sizeof dir, "%s/new", test_tmpdir());
  nw.known.out_dir = dir;
  nw.known.size = 32;
  nw.known.train_count = 1;
  nw.known.test_count = 0;
  nw.known.category = "marble";
  ck_assert_int_eq(grad_synth_write(&nw.known), GRAD_OK);
  ck_assert(exists(dir, "marble/train/good/000.png"));
  nw.future = "a field from a newer libgrad";
  expect_refused(grad_synth_write(&nw.known), "grad_synth_options");
}
END_TEST

/* ---- grad_model_options, grad_train_options, grad_eval_summary --------- */

typedef struct old_model_options { /* before local_res, global_res, holdout_fraction */
  size_t struct_size;
  const grad_backbone_options *backbone;
  int channels;
  int blocks;
} old_model_options;
SAME_OFFSET(old_model_options, grad_model_options, blocks);

typedef struct new_model_options {
  grad_model_options known;
  double future;
} new_model_options;

typedef struct old_train_options { /* up to the noise, before seed and what follows */
  size_t struct_size;
  int epochs;
  int batch;
  double lr_grid;
  double lr_net;
  double weight_decay;
  int lr_step_epochs;
  double lr_gamma;
  double clip_norm;
  double noise_prob;
  double noise_std;
} old_train_options;
SAME_OFFSET(old_train_options, grad_train_options, noise_std);

typedef struct new_train_options {
  grad_train_options known;
  int future;
} new_train_options;

typedef struct old_eval_summary { /* the first two metrics only */
  size_t struct_size;
  double image_auroc;
  double pixel_auroc;
} old_eval_summary;
SAME_OFFSET(old_eval_summary, grad_eval_summary, pixel_auroc);

typedef struct new_eval_summary {
  grad_eval_summary known;
  double future;
} new_eval_summary;

static char data_dir[512], category[600];

static void tiny_data(void) {
  snprintf(data_dir, sizeof data_dir, "%s/data", test_tmpdir());
  snprintf(category, sizeof category, "%s/weave", data_dir);
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data_dir;
  so.size = 32;
  so.train_count = 6;
  so.test_count = 4;
  so.category = "weave";
  ck_assert_int_eq(grad_synth_write(&so), GRAD_OK);
}

static void tiny_backbone(grad_backbone_options *bo) {
  grad_backbone_options_init(bo, sizeof *bo);
  bo->layers = GRAD_BACKBONE_LAYER(1);
  bo->input_size = 32;
  bo->random_seed = 4;
}

START_TEST(model_and_train_options_older_and_newer) {
  tiny_data();
  const char *folders[] = {category};
  grad_backbone_options bo;
  tiny_backbone(&bo);

  /* Older structs: the fields they lack take their defaults. */
  struct {
    old_model_options o;
    unsigned char guard[32];
  } om;
  struct {
    old_train_options o;
    unsigned char guard[64];
  } ot;
  memset(&om, GUARD, sizeof om);
  memset(&ot, GUARD, sizeof ot);
  grad_model_options_init((grad_model_options *)&om.o, sizeof om.o);
  grad_train_options_init((grad_train_options *)&ot.o, sizeof ot.o);
  ck_assert(guard_intact(om.guard, sizeof om.guard) && guard_intact(ot.guard, sizeof ot.guard));
  ck_assert_int_eq(om.o.channels, 64);
  ck_assert_int_eq(ot.o.epochs, 100);
  om.o.backbone = &bo;
  om.o.channels = 4;
  om.o.blocks = 1;
  ot.o.epochs = 1;
  ot.o.batch = 3;
  grad_model *old_model = NULL;
  ck_assert_msg(grad_model_train((grad_model_options *)&om.o, (grad_train_options *)&ot.o,
                                 folders, 1, &old_model) == GRAD_OK,
                "%s", grad_last_error());

  /* Newer structs with zero extra fields and the same values, the defaults
   * spelled out: the same model. */
  new_model_options nm;
  new_train_options nt;
  grad_model_options_init(&nm.known, sizeof nm);
  grad_train_options_init(&nt.known, sizeof nt);
  nm.known.backbone = &bo;
  nm.known.channels = 4;
  nm.known.blocks = 1;
  nm.known.local_res = 8;
  nm.known.global_res = 4;
  nm.known.holdout_fraction = 0.1;
  nt.known.epochs = 1;
  nt.known.batch = 3;
  nt.known.seed = 0;
  nt.known.memory_limit_bytes = (size_t)2 << 30;
  grad_model *new_model = NULL;
  ck_assert_int_eq(grad_model_train(&nm.known, &nt.known, folders, 1, &new_model), GRAD_OK);
  ck_assert_uint_eq(grad_model_bytes(old_model), grad_model_bytes(new_model));
  ck_assert_double_eq(grad_model_image_threshold(old_model),
                      grad_model_image_threshold(new_model));

  /* Non-zero fields unknown to this library are refused before any work. */
  grad_model *refused = NULL;
  nm.future = 0.5;
  expect_refused(grad_model_train(&nm.known, &nt.known, folders, 1, &refused),
                 "grad_model_options");
  nm.future = 0;
  nt.future = 1;
  expect_refused(grad_model_train(&nm.known, &nt.known, folders, 1, &refused),
                 "grad_train_options");
  ck_assert_ptr_null(refused);
  grad_model_free(new_model);

  /* The output struct: only the fields the caller's size covers are written,
   * and unknown ones of a newer caller are zeroed. */
  grad_context *ctx = NULL;
  ck_assert_int_eq(grad_context_create(old_model, &ctx), GRAD_OK);
  struct {
    old_eval_summary s;
    unsigned char guard[64];
  } os;
  memset(&os, GUARD, sizeof os);
  grad_eval_summary_init((grad_eval_summary *)&os.s, sizeof os.s);
  ck_assert(guard_intact(os.guard, sizeof os.guard));
  ck_assert_int_eq(grad_model_evaluate(old_model, ctx, category, NULL, NULL,
                                       (grad_eval_summary *)&os.s),
                   GRAD_OK);
  ck_assert(guard_intact(os.guard, sizeof os.guard));
  ck_assert_uint_eq(os.s.struct_size, sizeof os.s);

  new_eval_summary ns;
  grad_eval_summary_init(&ns.known, sizeof ns);
  ns.future = 42.0;
  ck_assert_int_eq(grad_model_evaluate(old_model, ctx, category, NULL, NULL, &ns.known),
                   GRAD_OK);
  ck_assert_uint_eq(ns.known.struct_size, sizeof ns);
  ck_assert_double_eq(ns.future, 0.0);
  ck_assert_int_eq(ns.known.images, 4);
  ck_assert_double_eq(ns.known.image_auroc, os.s.image_auroc);
  ck_assert_double_eq(ns.known.pixel_auroc, os.s.pixel_auroc);

  grad_eval_summary unset = {0};
  expect_refused(grad_model_evaluate(old_model, ctx, category, NULL, NULL, &unset),
                 "grad_eval_summary");
  grad_context_free(ctx);
  grad_model_free(old_model);
}
END_TEST

/* ---- grad_store_options (experimental; no older version yet) ------------- */

typedef struct new_store_options {
  grad_store_options known;
  int future;
} new_store_options;

START_TEST(store_options_newer) {
  new_store_options nw;
  grad_store_options_init(&nw.known, sizeof nw);
  ck_assert_uint_eq(nw.known.struct_size, sizeof nw);
  ck_assert_int_eq(nw.future, 0);
  nw.known.channels = 3, nw.known.height = 5, nw.known.width = 6;
  grad_store *store = NULL;
  ck_assert_int_eq(grad_store_create(&nw.known, &store), GRAD_OK);
  ck_assert_int_eq(grad_store_channels(store), 3);
  ck_assert_int_eq(grad_store_width(store), 6);
  grad_store_free(store);
  nw.future = 1;
  expect_refused(grad_store_create(&nw.known, &store), "grad_store_options");
  ck_assert_ptr_null(store);
}
END_TEST

int main(void) {
  Suite *s = suite_create("struct_size");
  TCase *tc = tcase_create("policy");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, backbone_options_older_and_newer);
  tcase_add_test(tc, calibration_options_older_and_newer);
  tcase_add_test(tc, synth_options_older_and_newer);
  tcase_add_test(tc, model_and_train_options_older_and_newer);
  tcase_add_test(tc, store_options_newer);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
