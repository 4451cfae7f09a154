/*
 * Training from C with a progress callback: one unified model on the normal
 * images of every folder given, saved to MODEL.
 *
 *   train MODEL EPOCHS FOLDER...
 *
 * Without converted ImageNet weights (backbone.weights_path) the backbone is
 * seeded random: fine for trying the API, not for real inspection.
 */
#include <grad/grad.h>
#include <stdio.h>
#include <stdlib.h>

static int on_progress(const grad_train_progress *p, void *user) {
  (void)user;
  if (p->epoch_done)
    printf("epoch %d/%d: loss %.5f, about %.0f s left\n", p->epoch + 1, p->epochs,
           p->epoch_loss, p->eta_seconds);
  return 0; /* non-zero would cancel with GRAD_E_CANCELLED */
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL EPOCHS FOLDER...\n", argv[0]);
    return 2;
  }
  grad_backbone_options backbone;
  grad_backbone_options_init(&backbone, sizeof backbone);
  backbone.input_size = 128; /* small and quick for the example */
  grad_model_options options;
  grad_model_options_init(&options, sizeof options);
  options.backbone = &backbone;
  grad_train_options training;
  grad_train_options_init(&training, sizeof training);
  training.epochs = atoi(argv[2]);
  training.progress = on_progress;

  grad_model *model = NULL;
  grad_status s = grad_model_train(&options, &training, (const char *const *)argv + 3, argc - 3,
                                   &model);
  if (s == GRAD_OK) s = grad_model_save(model, argv[1]);
  if (s != GRAD_OK) {
    fprintf(stderr, "libgrad: %s (%s)\n", grad_last_error(), grad_status_name(s));
    grad_model_free(model);
    return 1;
  }
  printf("saved %s, image threshold %.4f\n", argv[1], grad_model_image_threshold(model));
  grad_model_free(model);
  return 0;
}
