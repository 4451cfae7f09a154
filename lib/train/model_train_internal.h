/*
 * Training a model with CRAD's decoder. grad_model_options has no decoder
 * field yet (appending one changes the public struct and needs an ABI
 * baseline re-base), so the choice travels beside it, for grad's CLI
 * presets; docs/store.md describes the decoder.
 */
#ifndef GRAD_MODEL_TRAIN_INTERNAL_H
#define GRAD_MODEL_TRAIN_INTERNAL_H

#include <grad/train.h>

#include "store_internal.h"

typedef struct grad__model_decoder {
  grad__decoder type;  /* GRAD__DECODER_BASIC or GRAD__DECODER_CRAD */
  int expansion;       /* CRAD's E; 0: 4 * channels (864 at C = 216, as CRAD) */
} grad__model_decoder;

/* grad_model_train and grad_model_train_files with a decoder choice;
 * decoder NULL: BasicBlocks. */
GRAD_NODISCARD grad_status grad__model_train_decoder(const grad_model_options *options,
                                                     const grad__model_decoder *decoder,
                                                     const grad_train_options *train_options,
                                                     const char *const *folders,
                                                     int folder_count, grad_model **out);
GRAD_NODISCARD grad_status grad__model_train_files_decoder(const grad_model_options *options,
                                                           const grad__model_decoder *decoder,
                                                           const grad_train_options *train_options,
                                                           const char *const *paths,
                                                           size_t count, grad_model **out);

#endif
