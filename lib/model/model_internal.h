/* Internal layout of grad_model, grad_context and grad_result. */
#ifndef GRAD_MODEL_INTERNAL_H
#define GRAD_MODEL_INTERNAL_H

#include <grad/grad.h>

#include "backbone_internal.h"
#include "core.h"
#include "pca.h"
#include "store_internal.h"

/* The model-file format this library writes; it reads this and older. */
#define GRAD__MODEL_FORMAT "libgrad-model"
/* 2: metadata "data_crc32" holds the CRC-32 of the tensor data (1 had none). */
#define GRAD__MODEL_FORMAT_VERSION 2

/* How a model was made: key/value text pairs (grad_model_provenance). */
typedef struct grad__provenance {
  char **keys, **values;
  size_t count;
} grad__provenance;

struct grad_model {
  grad_backbone *backbone;
  grad__pca *reduce;
  grad_store *store;
  grad_head *head;
  char *description;  /* what it was trained on, for people (metadata "model.trained_on") */
  size_t workspace_bytes;  /* peak workspace of one scoring pass, measured once */
  grad__provenance provenance;  /* metadata "provenance.<key>" */
};

/* Images a batch call sends through the backbone at once (the backbone
 * itself works in groups of this size). */
#define GRAD__SCORE_GROUP 8

struct grad_context {
  const grad_model *model;
  grad_workspace *ws;
  float *input;     /* 3 x S x S */
  float *raw;       /* C_raw x H x W: backbone features */
  float *features;  /* C x H x W: reduced */
  float *recon;     /* C x H x W */
  /* grad_model_score_batch's buffers for GRAD__SCORE_GROUP images, made
   * on its first call (NULL until then). */
  float *group_input, *group_raw, *group_features, *group_recon;
  /* The head's workspaces, one per part of a group's per-image work (made
   * on first use; NULL until then). */
  grad_workspace *part_ws[GRAD__SCORE_GROUP];
};


struct grad_result {
  double score;
  double normalized;
  int anomalous;
  int width, height;  /* the scored image's size */
  float *map;         /* width x height */
  uint8_t *mask;      /* width x height, NULL when the pixel threshold is unset */
  int size;           /* S */
  float *model_map;   /* S x S: the map evaluation compares with S x S masks */
};

/* Scores an image already turned into the network input (3 x S x S):
 * the S x S map into map (may be NULL) and the image score. */
grad_status grad__model_score_tensor(const grad_model *model, grad_context *ctx,
                                     const float *input, float *map, float *score);

/* Runs one scoring pass on a blank input to measure the workspace a
 * context needs (model->workspace_bytes); called once a model is complete. */
grad_status grad__model_measure(grad_model *model);

/* The public handle of a model's reduction: the grad__pca itself behind
 * the incomplete type (lib/model/reduction.c). */
const grad_reduction *grad__reduction_of(const grad__pca *pca);

/* Takes ownership of the parts; on failure frees them all. */
grad_status grad__model_assemble(grad_backbone *backbone, grad__pca *reduce, grad_store *store,
                                 grad_head *head, const char *description, grad_model **out);

/* Adds a pair (copied); lib/model/provenance.c. */
grad_status grad__provenance_set(grad__provenance *p, const char *key, const char *value);
void grad__provenance_free(grad__provenance *p);
/* Writes every pair as metadata "provenance.<key>"; reads them back. */
grad_status grad__provenance_write(const grad__provenance *p, grad__st_writer *w);
grad_status grad__provenance_read(const grad__st_file *f, grad__provenance *p);

#endif
