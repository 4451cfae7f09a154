/*
 * The presets of `grad train`: GRAD (arXiv 2402.18293) and CRAD as the
 * official code (github.com/tae-mo/CRAD, experiments/config.yaml and
 * config_crad-s.yaml) configures them. Each value and its source is in
 * docs/store.md ("Presets").
 */
#include <string.h>

#include "train_presets.h"

typedef struct train_preset {
  const char *name;
  const char *summary;
  const char *decoder; /* grad_model_options.decoder */
  int expansion; /* CRAD's E */
  int blocks;
  int epochs;
} train_preset;

static const train_preset presets[] = {
  {"grad", "GRAD: 7 BasicBlocks, 100 epochs", "basic", 0, 7, 100},
  {"crad", "CRAD: 11 bottlenecks of width 864, 50 epochs", "crad", 864, 11, 50},
  {"crad-s", "CRAD-s: 11 bottlenecks of width 216, 50 epochs", "crad", 216, 11, 50},
};
enum { PRESETS = sizeof presets / sizeof presets[0] };

/* The backbone of all three: EfficientNet-b4 in efficientnet_pytorch's
 * layout (the official code's), stages 3 and 4 (56 + 160 = 216 channels). */
#define PRESET_ARCH "efficientnet_b4_same"
#define PRESET_LAYERS ((1u << 3) | (1u << 4))

void cli_train_presets_usage(FILE *to) {
  fputs("Presets (--preset NAME; options given as well override the preset's values):\n", to);
  for (int i = 0; i < PRESETS; i++) fprintf(to, "  %-8s %s\n", presets[i].name, presets[i].summary);
  fputs("  all: --arch " PRESET_ARCH " --layers 3,4 --size 224, channels 216 (no\n"
        "  reduction), grids 8 / 4, batch 16, AdamW at 0.1 (grids) / 1e-3, StepLR x0.1\n"
        "  every 40 epochs, gradient clipping 0.1; give ImageNet weights with --weights\n",
        to);
}

int cli_train_preset_apply(const char *name, grad_model_options *mo, grad_backbone_options *bo,
                           grad_train_options *to,
                           const char **layers_text) {
  const train_preset *p = NULL;
  for (int i = 0; i < PRESETS; i++)
    if (strcmp(name, presets[i].name) == 0) p = &presets[i];
  if (!p) return cli_usage_error("train", "unknown --preset '%s' (valid: grad, crad, crad-s)", name);
  int channels = 0;
  if (grad_backbone_arch_channels(PRESET_ARCH, PRESET_LAYERS, &channels) != GRAD_OK)
    return cli_usage_error("train",
                           "--preset %s needs the EfficientNet-b4 backbone (%s), which this "
                           "libgrad does not have yet; use --arch with a ResNet instead",
                           p->name, PRESET_ARCH);
  bo->arch = PRESET_ARCH;
  bo->layers = PRESET_LAYERS;
  *layers_text = "3,4";
  bo->input_size = 224;
  bo->output_stride = 8;
  mo->channels = channels; /* all of them: the official code has no reduction */
  mo->blocks = p->blocks;
  mo->local_res = 8;
  mo->global_res = 4;
  mo->decoder = p->decoder;
  mo->expansion = p->expansion;
  to->epochs = p->epochs;
  to->batch = 16;
  to->lr_grid = 0.1;
  to->lr_net = 1e-3;
  to->weight_decay = 0.01;
  to->lr_step_epochs = 40;
  to->lr_gamma = 0.1;
  to->clip_norm = 0.1;
  to->noise_prob = 0.5;
  to->noise_std = 0.05;
  return CLI_OK;
}

const char *cli_train_preset_find(int argc, char **argv, int *count) {
  const char *found = NULL;
  *count = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) {
      found = argv[++i];
      ++*count;
    } else if (strncmp(argv[i], "--preset=", 9) == 0) {
      found = argv[i] + 9;
      ++*count;
    }
  }
  return found;
}
