/* `grad train --preset NAME`: the paper's configurations (docs/guide.md). */
#ifndef GRAD_TRAIN_PRESETS_H
#define GRAD_TRAIN_PRESETS_H

#include <stdio.h>

#include "cli.h"

/* Prints the presets for --help. */
void cli_train_presets_usage(FILE *to);

/*
 * Sets every option the preset fixes; CLI_OK, or a usage error naming the
 * preset (unknown, or its backbone missing from this libgrad). *layers_text
 * receives the preset's layers as written on the command line.
 */
int cli_train_preset_apply(const char *name, grad_model_options *mo, grad_backbone_options *bo,
                           grad_train_options *to,
                           const char **layers_text);

/* The value of --preset in argv (NULL if absent), so the preset can be set
 * before the other options, which then override it wherever they stand.
 * *count receives how many times --preset appears. */
const char *cli_train_preset_find(int argc, char **argv, int *count);

#endif
