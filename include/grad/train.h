/* libgrad: Training a model on normal images, with progress and cancellation. */
#ifndef GRAD_TRAIN_H
#define GRAD_TRAIN_H

#include <grad/common.h>
#include <grad/image.h>
#include <grad/backbone.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The phases of grad_model_train, in order, as grad_train_progress.phase. */
typedef enum grad_train_phase {
  GRAD_TRAIN_PHASE_EPOCHS = 0,      /* training the store: one call per optimiser step */
  GRAD_TRAIN_PHASE_FEATURES = 1,    /* backbone features of the training images */
  GRAD_TRAIN_PHASE_REDUCTION = 2,   /* PCA fit and reduction of the cached features */
  GRAD_TRAIN_PHASE_CALIBRATION = 3  /* scoring the held-out images for the thresholds */
} grad_train_phase;

/*
 * What the progress callback sees after every optimiser step, and (from
 * grad_model_train) after each unit of work of the other phases, where
 * epoch_done is 0 and the epoch fields describe the run ahead. The struct
 * may grow: read struct_size before any field added after the first
 * release.
 */
typedef struct grad_train_progress {
  size_t struct_size;
  int epoch;              /* 0-based epoch of this step */
  int epochs;             /* epochs the run goes to */
  int step;               /* 1-based step within the epoch */
  int steps_per_epoch;
  int64_t total_steps;    /* optimiser steps taken so far, over all epochs and resumes */
  double loss;            /* this step's training loss (docs/method.md section 6) */
  double epoch_loss;      /* mean loss per image over the epoch so far */
  int epoch_done;         /* 1 on the last step of an epoch */
  double lr_grid;         /* learning rates used by this step */
  double lr_net;
  double grad_norm;       /* total gradient L2 norm before clipping */
  double elapsed_seconds; /* since this training call started */
  double eta_seconds;     /* estimate of the time still needed by this phase; < 0: unknown */
  /* Added after 0.1.0 (struct_size tells): */
  int phase;              /* a grad_train_phase */
  int64_t phase_done;     /* units done in this phase: images, or steps in EPOCHS */
  int64_t phase_total;    /* units the phase has */
} grad_train_progress;

/*
 * Called after every optimiser step, on the training thread. Return 0 to
 * go on, non-zero to stop: training then returns GRAD_E_CANCELLED and
 * still gives a model (*out): the store holds the parameters of the last
 * completed step, and the thresholds are calibrated on the held-out images
 * as at the end of a full run, so the model scores and saves like any
 * other (its provenance says status "cancelled" and the epochs completed).
 * Runs resume only from epoch boundaries: when the stop comes on an
 * epoch's last step (epoch_done) and checkpoint_path is set, a checkpoint
 * of that epoch is saved before returning. On any other error *out is NULL.
 * grad_model_train also calls it during its other phases (phase): a stop
 * during feature extraction or channel reduction returns GRAD_E_CANCELLED
 * with no model (no step was taken); calibration, short and needed by the
 * model, is reported but not stopped.
 */
typedef int (*grad_train_progress_fn)(const grad_train_progress *progress, void *user);

/*
 * Training options, versioned as grad_backbone_options: fill with
 * grad_train_options_init(&opts, sizeof opts) and change fields after.
 */
typedef struct grad_train_options {
  size_t struct_size;           /* the caller's sizeof(grad_train_options), set by _init */
  int epochs;                   /* 100 (the paper; CRAD used 50) */
  int batch;                    /* 16; the last, partial batch of an epoch is kept */
  double lr_grid;               /* 0.1: AdamW learning rate of the two grids */
  double lr_net;                /* 1e-3: of the coordinate nets and the decoder */
  double weight_decay;          /* 0.01, decoupled (AdamW), on every parameter */
  int lr_step_epochs;           /* 40: StepLR period in epochs; 0 keeps the rates */
  double lr_gamma;              /* 0.1: StepLR factor */
  double clip_norm;             /* 0.1: total-L2-norm gradient clipping; 0 disables */
  double noise_prob;            /* 0.5: chance per batch of coordinate noise */
  double noise_std;             /* 0.05: its standard deviation */
  uint64_t seed;                /* 0: shuffling and noise; same seed + same thread count => same model */
  const char *checkpoint_path;  /* NULL: where checkpoints go (saved atomically) */
  int checkpoint_every;         /* 0: save a checkpoint every this many epochs (and at the end) */
  size_t memory_limit_bytes;    /* 2 GiB: feature cache above this goes to a temporary file */
  grad_train_progress_fn progress; /* NULL: called after every step */
  void *progress_user;          /* passed to progress */
  const char *resume_path;      /* NULL: a checkpoint to resume from (same data and options) */
  /* Added after 0.1.0 (struct_size tells): */
  const char *note;             /* NULL: a line of the caller's about the data (say, images
                                   it left out), appended to the model's description; copied */
  grad_precision precision;     /* GRAD_PRECISION_FP32; GRAD_PRECISION_BF16 trains the store's
                                   convolutions in bf16 (fp32 sums, weights and gradients)
                                   where grad_precision_available() says so, else
                                   GRAD_E_UNSUPPORTED; faster for CRAD's decoders only
                                   (docs/training.md, "bf16 training") */
} grad_train_options;

/* Fills struct_size bytes at options with the defaults of docs/method.md
 * (training) and sets options->struct_size. NULL is a no-op. Thread-safe. */
GRAD_API void grad_train_options_init(grad_train_options *options, size_t struct_size);

/* The model that training makes (declared with its calls in <grad/model.h>). */
typedef struct grad_model grad_model;

/*
 * The configuration of a model to train, versioned as grad_backbone_options:
 * fill with grad_model_options_init(&opts, sizeof opts).
 *
 * The backbone is described by a grad_backbone_options of its own, pointed
 * to rather than embedded by value: each of the two structs may then gain
 * fields without moving the other's (an embedded struct that grows would
 * shift every field after it, breaking older binaries at run time).
 */
typedef struct grad_model_options {
  size_t struct_size;        /* the caller's sizeof(grad_model_options), set by _init */
  /* The backbone (architecture, weights, stages, input size S, stride).
   * NULL (the default) means grad_backbone_options_init's defaults. Its
   * random_seed also seeds the store's initial parameters. Only read during
   * grad_model_train. */
  const grad_backbone_options *backbone;
  int channels;              /* C after the PCA reduction; default 64 */
  int blocks;                /* decoder BasicBlocks; default 2 */
  int local_res;             /* Rl, default 8 */
  int global_res;            /* Rg, default 4 */
  double holdout_fraction;   /* normal images kept out of training to calibrate, default 0.1 */
  const char *decoder;       /* "basic" (default; NULL too): BasicBlocks (GRAD); "crad": CRAD's
                                MobileNetV3 bottlenecks (docs/store.md) */
  int expansion;             /* CRAD's bottleneck width E (864 in CRAD, 216 in CRAD-s);
                                0 (default): 4 * channels; must be 0 with "basic" */
} grad_model_options;

/* Fills struct_size bytes at options with the defaults; NULL is a no-op.
 * Thread-safe. */
GRAD_API void grad_model_options_init(grad_model_options *options, size_t struct_size);

/*
 * Trains a unified model on the normal images of every folder. A folder is
 * an MVTec-layout category (its train/good is used) or a plain folder of
 * PNG/JPEG images. progress (in train_options) may cancel.
 *
 * options and train_options may be NULL (all defaults); both are read by
 * the struct_size policy and only during the call. The model is the
 * caller's (grad_model_free). Errors: GRAD_E_INVALID_ARG (out or folders
 * NULL, folder_count < 1, an option out of range or a field unknown to this
 * version set by a newer header: the message names the struct and field),
 * GRAD_E_IO / GRAD_E_MISSING (a folder unreadable or without images),
 * GRAD_E_FORMAT (an image that does not decode: its path), the backbone's
 * errors (grad_backbone_create), GRAD_E_NUMERIC (the loss or a gradient
 * became non-finite), GRAD_E_CANCELLED (see grad_train_progress_fn: *out
 * may then hold a model), GRAD_E_NOMEM. On any other error *out is NULL.
 *
 * Threading: training uses the kernels' thread pool (grad_threads_set) and
 * calls progress on the calling thread. Several trainings may run at once
 * in different threads; each reads its own options.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_train(const grad_model_options *options,
                                                     const grad_train_options *train_options,
                                                     const char *const *folders,
                                                     int folder_count, grad_model **out);

/*
 * Trains on a list of image files (PNG or JPEG) rather than folders. The
 * held-out images (holdout_fraction) are spread evenly through the list in
 * the order given. Otherwise as grad_model_train.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_train_files(const grad_model_options *options,
                                                           const grad_train_options *train_options,
                                                           const char *const *paths, size_t count,
                                                           grad_model **out);

/*
 * Trains on images the program already holds (grad_image_load_memory,
 * grad_image_from_pixels, ...), held out as grad_model_train_files does.
 * The images are only read during the call; the caller still owns them.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_train_images(const grad_model_options *options,
                                                            const grad_train_options *train_options,
                                                            const grad_image *const *images,
                                                            size_t count, grad_model **out);

/*
 * Fine-tuning: continues the training of the model saved at model_path on
 * the normal images of folders (as grad_model_train finds them), for
 * train_options->epochs more epochs. The backbone and the channel
 * reduction stay as they are; the store goes on from its parameters with a
 * fresh optimiser (learning-rate schedule from its start); the thresholds
 * are calibrated again on the folders' held-out images (the default
 * fraction, 0.1). Give the old folders too, with the new ones: the store
 * learns only what it is shown now. The description and the provenance
 * ("more_epochs", "more_status") say so. resume_path is refused;
 * cancelling behaves as in grad_model_train. *out is a new model.
 */
GRAD_API GRAD_NODISCARD grad_status grad_model_train_more(const char *model_path,
                                                          const grad_train_options *train_options,
                                                          const char *const *folders,
                                                          int folder_count, grad_model **out);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_TRAIN_H */
