/* libgrad: The grid feature store and its decoder: reconstruction and training (docs/method.md sections 4-6). */
#ifndef GRAD_STORE_H
#define GRAD_STORE_H

#include <grad/common.h>
#include <grad/train.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The grid feature store with its coordinate nets and decoder: it maps a
 * feature map F (C x H x W) to its reconstruction R of the same shape.
 * A store is created by training or by loading a model (grad_model), which
 * then owns it and lends it through grad_model_store(); or, in the
 * experimental tier below, on its own and trained on the caller's feature
 * maps. Once trained it is only read, so any number of threads may
 * reconstruct with it at once, each with its own workspace.
 */
typedef struct grad_store grad_store;

/* Frees a store the caller owns; NULL is a no-op. Never call it on the
 * store of a model (grad_model_free frees that one). */
GRAD_API void grad_store_free(grad_store *store);

/* The feature shape the store works on: C, H and W; 0 for a NULL store. */
GRAD_API int grad_store_channels(const grad_store *store);
GRAD_API int grad_store_height(const grad_store *store);
GRAD_API int grad_store_width(const grad_store *store);

/*
 * Reconstructs n feature maps in inference mode (BatchNorm running
 * statistics): features and reconstruction are n x C x H x W float32,
 * N,C,H,W order, and must not overlap. The workspace is reset first, so
 * nothing else may live in it. Errors: GRAD_E_INVALID_ARG (a NULL pointer,
 * n < 1), GRAD_E_TOO_LARGE, GRAD_E_NOMEM. Thread-safe with distinct
 * workspaces; the store is not modified.
 */
GRAD_API GRAD_NODISCARD grad_status grad_store_reconstruct(const grad_store *store,
                                                           grad_workspace *ws,
                                                           const float *features, int n,
                                                           float *reconstruction);

#ifdef GRAD_EXPERIMENTAL
/* ---- A store of one's own (experimental) ----------------------------------
 * For a program that brings its own feature maps (its own backbone, or
 * features it reduced itself) and wants the store alone: create one, train
 * it on the maps, reconstruct with it, free it. grad_model_train does the
 * same inside, on images. Not yet promised: may change in any release.
 *
 *   grad_store_options so;
 *   grad_store_options_init(&so, sizeof so);
 *   so.channels = C, so.height = H, so.width = W;
 *   grad_store *store = NULL;
 *   if (grad_store_create(&so, &store) != GRAD_OK ||
 *       grad_store_train(store, features, count, NULL) != GRAD_OK)
 *     fprintf(stderr, "%s\n", grad_last_error());
 *   ...grad_store_reconstruct(store, ws, features, 1, reconstruction)...
 *   grad_store_free(store);
 */

/*
 * The store's shape and decoder, versioned as grad_backbone_options: fill
 * with grad_store_options_init(&opts, sizeof opts) and change fields after.
 * The defaults are grad_model_options' (docs/method.md sections 4-6).
 */
typedef struct grad_store_options {
  size_t struct_size;   /* the caller's sizeof(grad_store_options), set by _init */
  int channels;         /* C of the feature maps: 64 */
  int height;           /* H: 28 (a 224-pixel image at output stride 8) */
  int width;            /* W: 28 */
  int local_res;        /* Rl: 8 */
  int global_res;       /* Rg: 4 */
  int blocks;           /* decoder blocks: 2 */
  const char *decoder;  /* "basic" (default; NULL too): BasicBlocks (GRAD); "crad": CRAD's
                           bottlenecks (docs/store.md) */
  int expansion;        /* CRAD's bottleneck width; 0 (default): 4 * channels; must be 0
                           with "basic" */
  uint64_t seed;        /* 0: seeds the initial parameters (a model's store uses its
                           backbone's random_seed) */
} grad_store_options;

/* Fills struct_size bytes at options with the defaults; NULL is a no-op.
 * Thread-safe. */
GRAD_API void grad_store_options_init(grad_store_options *options, size_t struct_size);

/*
 * A new, untrained store (parameters initialised as docs/method.md section
 * 6 says, from options->seed), the caller's to free with grad_store_free.
 * options NULL means the defaults. Errors: GRAD_E_INVALID_ARG (out NULL, a
 * field out of range or unknown to this version: the message names it),
 * GRAD_E_TOO_LARGE (the global grid, C*H*W*Rg*Rg, too big), GRAD_E_NOMEM.
 * On failure *out is NULL. Thread-safe.
 */
GRAD_API GRAD_NODISCARD grad_status grad_store_create(const grad_store_options *options,
                                                      grad_store **out);

/*
 * Trains store on count feature maps, count x C x H x W float32 (N,C,H,W,
 * the store's C, H and W), for options->epochs epochs, exactly as
 * grad_model_train trains its store (docs/method.md section 6): shuffled
 * mini-batches of options->batch, coordinate noise, the fused loss,
 * gradient clipping, AdamW and StepLR. The same store, features, options
 * and thread count give bitwise the same parameters. features are read
 * during the call only, and not copied. options NULL means the defaults;
 * memory_limit_bytes and note are not used; checkpoint_path,
 * checkpoint_every and resume_path work as in grad_model_train (a
 * checkpoint resumes only the same store shape, count and batch).
 *
 * progress is called after every optimiser step (phase
 * GRAD_TRAIN_PHASE_EPOCHS); a non-zero return stops with GRAD_E_CANCELLED,
 * the store then holding the parameters of the last completed step. Other
 * errors: GRAD_E_INVALID_ARG (store or features NULL, count < 1, an option
 * out of range), GRAD_E_NUMERIC (the loss or a gradient became
 * non-finite: the store is then not meaningful), GRAD_E_IO (a checkpoint),
 * GRAD_E_NOMEM. Training writes the store: no other thread may use it
 * during the call. Never pass a model's store.
 */
GRAD_API GRAD_NODISCARD grad_status grad_store_train(grad_store *store, const float *features,
                                                     int count,
                                                     const grad_train_options *options);
#endif /* GRAD_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

#endif /* GRAD_STORE_H */
