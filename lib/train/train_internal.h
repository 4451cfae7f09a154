/*
 * The training loop of docs/method.md section 6 over cached features: shuffled
 * mini-batches, coordinate noise, the fused-reconstruction loss, backward,
 * gradient clipping, AdamW and StepLR, with progress, cancellation,
 * checkpoints and resume. The public "train a model from folders of images"
 * call is built on grad__train_store().
 *
 * Determinism: one grad__rng, seeded from options->seed, draws everything
 * random in this order: at the start of every epoch a Fisher-Yates shuffle
 * of the image indices; then per batch one uniform number (always drawn,
 * so noise_prob does not shift the stream) and, when it is below
 * noise_prob, n x 2 x H x W normals for the local coordinates. The same
 * seed, features, options and thread count give bitwise the same model, and
 * a run resumed from a checkpoint continues exactly where the uninterrupted
 * run would be (checkpoints hold the rng state, the optimiser's moments and
 * step count, the BatchNorm running statistics and the epoch count; the
 * learning rates follow from the epoch).
 */
#ifndef GRAD_TRAIN_INTERNAL_H
#define GRAD_TRAIN_INTERNAL_H

#include <grad/train.h>

#include "feature_cache.h"
#include "optim.h"
#include "rng.h"
#include "store_internal.h"

/* What a training call did. */
typedef struct grad__train_report {
  int start_epoch;         /* epochs already done when the call began (from a checkpoint) */
  int epochs_done;         /* epochs completed when it returned */
  int64_t steps;           /* optimiser steps taken by this call */
  double first_loss;       /* loss of this call's first step (NAN if none) */
  double last_loss;        /* loss of its last step (NAN if none) */
  double last_epoch_loss;  /* mean loss per image of the last completed epoch (NAN if none) */
  double seconds;          /* wall time of the call */
} grad__train_report;

/*
 * Trains `store` on every image of `cache` (whose channels, height and
 * width must be the store's) until options->epochs epochs are done.
 * options NULL means the defaults. resume_path, when not NULL, names a
 * checkpoint written by an earlier run on the same store configuration,
 * cache size and batch size: the store's parameters and running statistics,
 * the optimiser and the rng are restored from it and training continues at
 * its epoch (nothing is done when that is already options->epochs).
 *
 * options->resume_path is not read: the caller passes it (or another path)
 * as resume_path. options->memory_limit_bytes is for whoever creates the
 * cache.
 *
 * Checkpoints: with options->checkpoint_path set, a checkpoint is saved
 * atomically after every checkpoint_every epochs (when > 0), after the last
 * one, and when the run is cancelled on an epoch's last step.
 *
 * Returns GRAD_E_CANCELLED when the progress callback asks to stop; the
 * store then holds the parameters of the last completed step. A non-finite
 * loss or gradient norm gives GRAD_E_NUMERIC (the store is then not
 * meaningful). report may be NULL.
 */
grad_status grad__train_store(grad_store *store, grad__feature_cache *cache,
                              const grad_train_options *options, const char *resume_path,
                              grad__train_report *report);

/* What a model-training call records as the model's provenance
 * (lib/train/train_provenance.c; the keys are listed in <grad/model.h>). */
typedef struct grad__train_record {
  const char *source;                /* "folders", "files" or "memory" */
  const char *const *folders;        /* the training folders, or NULL */
  size_t folder_count;
  const char *const *files;          /* or the training files (their folders are named) */
  size_t file_count;
  size_t images, holdout_images;
  int epochs_done;
  bool cancelled, resumed;
  const grad_model_options *model_options;  /* resolved */
  const grad_train_options *train_options;  /* resolved */
} grad__train_record;

grad_status grad__train_record_provenance(grad_model *model, const grad__train_record *record);

/* Copies the fields a caller's struct_size covers over the defaults, then
 * checks every value (GRAD_E_INVALID_ARG naming the field). */
grad_status grad__train_options_resolve(const grad_train_options *in, grad_train_options *out);

/* ---- Pieces of the loop, for the tests, the bench and checkpoints ----- */

typedef struct grad__trainer {
  grad_store *store;
  grad_train_options options;  /* resolved */
  grad__param **params;        /* the store's trainable tensors */
  size_t param_count;
  grad__adamw *optimiser;
  grad_workspace *ws;          /* forward tape and backward scratch */
  grad__rng rng;
  int epoch;                   /* epochs completed */
  int max_batch;
  int channels;
  size_t positions;            /* H * W */
  float *batch, *recon, *d_recon, *noise;  /* max_batch images each (noise: 2 channels) */
} grad__trainer;

/* A trainer for batches of up to max_batch images; rng seeded from
 * options->seed, optimiser at step 0 with the options' learning rates. */
grad_status grad__trainer_create(grad_store *store, const grad_train_options *options,
                                 int max_batch, grad__trainer **out);
void grad__trainer_free(grad__trainer *trainer);

/* Sets both groups' learning rates by StepLR for `epoch` (0-based). */
void grad__trainer_set_epoch_lr(grad__trainer *trainer, int epoch);

/*
 * One optimiser step on n images F (n x C x H x W) with coord_noise (n x 2 x
 * H x W, or NULL): training forward, loss, backward, clipping, AdamW. loss
 * and grad_norm (the norm before clipping) may be NULL.
 */
grad_status grad__trainer_step(grad__trainer *trainer, const float *F, int n,
                               const float *coord_noise, double *loss, double *grad_norm);

/*
 * Checkpoints (lib/train/train_checkpoint.c): the store's tensors and metadata
 * (grad__store_write), the optimiser state under "train.adamw.", and
 * metadata "train.format", "train.epoch", "train.rng", "train.images",
 * "train.batch", "train.store" (the configuration) and "train.options"
 * (for people reading the file). Saved atomically.
 */
grad_status grad__train_checkpoint_save(const grad__trainer *trainer, int images,
                                        const char *path);
/* Restores the trainer and its store from a checkpoint; images and the
 * batch size must be the ones it was made with. */
grad_status grad__train_checkpoint_load(grad__trainer *trainer, int images, const char *path);

#endif
