/*
 * Writes the smallest model libgrad trains (resnet18 cut after layer1,
 * 64 x 64 input, random backbone weights, synthetic data) for fuzz_model:
 * the whole file is its padding source, the header alone its seed.
 * Usage: make_model_seed WORK_DIR MODEL_OUT HEADER_OUT
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grad/grad.h>

static int fail(const char *what) {
  fprintf(stderr, "make_model_seed: %s: %s\n", what, grad_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: make_model_seed WORK_DIR MODEL_OUT HEADER_OUT\n");
    return 2;
  }
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = argv[1];
  so.size = 64;
  so.train_count = 6;
  so.test_count = 1;
  so.category = grad_synth_category_name(0);
  if (grad_synth_write(&so) != GRAD_OK) return fail("synthetic data");
  char folder[4096];
  snprintf(folder, sizeof folder, "%s/%s", argv[1], so.category);

  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  bo.layers = 1u << 1;
  bo.input_size = 64;
  mo.channels = 8;
  mo.blocks = 1;
  mo.holdout_fraction = 0.34;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  to.epochs = 1;
  to.batch = 4;
  const char *folders[] = {folder};
  grad_model *model = NULL;
  if (grad_model_train(&mo, &to, folders, 1, &model) != GRAD_OK) return fail("training");
  grad_status s = grad_model_save(model, argv[2]);
  grad_model_free(model);
  if (s != GRAD_OK) return fail("saving");

  FILE *in = fopen(argv[2], "rb");
  unsigned char len[8];
  if (!in || fread(len, 1, 8, in) != 8) return fail("reading back");
  size_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | len[i];
  char *header = malloc(n);
  if (!header || fread(header, 1, n, in) != n) return fail("reading back");
  fclose(in);
  FILE *out = fopen(argv[3], "wb");
  if (!out || fwrite(len, 1, 8, out) != 8 || fwrite(header, 1, n, out) != n || fclose(out))
    return fail("writing the header");
  free(header);
  return 0;
}
