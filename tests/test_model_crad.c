/*
 * A whole model with CRAD's decoder: trained from folders (tiny: 32 px,
 * resnet18 layer1, C = 8, two bottlenecks of width 16), saved, loaded back
 * with its decoder, scoring the same; and the CRAD default width 4C.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <grad/grad.h>

#include "model_internal.h"
#include "store_internal.h"
#include "safetensors.h"
#include "testutil.h"

static char data_dir[512];

static void make_data(void) {
  snprintf(data_dir, sizeof data_dir, "%s/data", test_tmpdir());
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data_dir;
  so.seed = 3;
  so.size = 32;
  so.train_count = 10;
  so.test_count = 4;
  ck_assert_int_eq(grad_synth_write(&so), GRAD_OK);
}

static grad_model *train_tiny(const char *decoder, int expansion) {
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  mo.decoder = decoder;
  mo.expansion = expansion;
  bo.layers = 1u << 1;
  bo.input_size = 32;
  mo.channels = 8;
  mo.blocks = 2;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 2;
  to.batch = 4;
  char folder[600];
  snprintf(folder, sizeof folder, "%s/%s", data_dir, grad_synth_category_name(0));
  const char *folders[1] = {folder};
  grad_model *model = NULL;
  grad_status st = grad_model_train(&mo, &to, folders, 1, &model);
  ck_assert_msg(st == GRAD_OK, "%s", grad_last_error());
  return model;
}

static double score_first_test_image(const grad_model *model) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s/test/good/000.png", data_dir, grad_synth_category_name(0));
  grad_image *image = NULL;
  ck_assert_msg(grad_image_load(path, &image) == GRAD_OK, "%s", grad_last_error());
  grad_context *ctx = NULL;
  grad_result *result = NULL;
  ck_assert_int_eq(grad_context_create(model, &ctx), GRAD_OK);
  ck_assert_int_eq(grad_model_score(model, ctx, image, &result), GRAD_OK);
  double score = grad_result_score(result);
  grad_result_free(result);
  grad_context_free(ctx);
  grad_image_free(image);
  return score;
}

START_TEST(crad_model_trains_saves_and_loads) {
  make_data();
  grad_model *model = train_tiny("crad", 16);
  const grad__store_config *c = grad__store_config_of(model->store);
  ck_assert_int_eq(c->decoder, GRAD__DECODER_CRAD);
  ck_assert_int_eq(c->expansion, 16);
  ck_assert_int_eq(c->blocks, 2);
  double score = score_first_test_image(model);
  ck_assert(isfinite(score));

  char path[600];
  snprintf(path, sizeof path, "%s/crad.grad", test_tmpdir());
  ck_assert_int_eq(grad_model_save(model, path), GRAD_OK);
  grad__st_file *file = NULL;
  ck_assert_int_eq(grad__st_open(path, &file), GRAD_OK);
  ck_assert_str_eq(grad__st_meta(file, "store.decoder"), "crad");
  ck_assert_ptr_nonnull(grad__st_find(file, "store.decoder.1.se.expand.weight"));
  grad__st_close(file);
  grad_model *back = NULL;
  ck_assert_msg(grad_model_load(path, &back) == GRAD_OK, "%s", grad_last_error());
  ck_assert(memcmp(grad__store_config_of(back->store), c, sizeof *c) == 0);
  ck_assert_double_eq(score_first_test_image(back), score);
  grad_model_free(back);
  grad_model_free(model);
}
END_TEST

START_TEST(crad_width_defaults_to_four_channels) {
  make_data();
  grad_model *model = train_tiny("crad", 0);
  ck_assert_int_eq(grad__store_config_of(model->store)->expansion, 4 * 8);
  grad_model_free(model);
  /* NULL means BasicBlocks; an unknown name or a width without CRAD is refused. */
  grad_model *basic = train_tiny(NULL, 0);
  ck_assert_int_eq(grad__store_config_of(basic->store)->decoder, GRAD__DECODER_BASIC);
  grad_model_free(basic);
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  const char *folders[1] = {data_dir};
  grad_model *none = NULL;
  mo.decoder = "mobilenet";
  ck_assert_int_eq(grad_model_train(&mo, NULL, folders, 1, &none), GRAD_E_INVALID_ARG);
  ck_assert(strstr(grad_last_error(), "mobilenet") != NULL);
  mo.decoder = "basic";
  mo.expansion = 16;
  ck_assert_int_eq(grad_model_train(&mo, NULL, folders, 1, &none), GRAD_E_INVALID_ARG);
  ck_assert_ptr_null(none);
}
END_TEST

static Suite *crad_suite(void) {
  Suite *s = suite_create("model_crad");
  TCase *tc = tcase_create("model");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, crad_model_trains_saves_and_loads);
  tcase_add_test(tc, crad_width_defaults_to_four_channels);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(crad_suite()); }
