/*
 * libgrad: GRAD unsupervised visual anomaly detection for C and C++.
 *
 * Train on images of good parts only; score new images for anomalies with a
 * per-pixel map and an image score. The one header a user includes.
 *
 *   #include <grad/grad.h>
 *
 *   grad_model *model = NULL;
 *   grad_context *ctx = NULL;      // per-thread scratch; the model is shared
 *   grad_image *image = NULL;
 *   grad_result *result = NULL;
 *   if (grad_model_load("parts.grad", &model) != GRAD_OK ||
 *       grad_context_create(model, &ctx) != GRAD_OK ||
 *       grad_image_load("part_0042.png", &image) != GRAD_OK ||
 *       grad_model_score(model, ctx, image, &result) != GRAD_OK) {
 *     fprintf(stderr, "libgrad: %s\n", grad_last_error());
 *   } else {
 *     printf("score %.3f (%s)\n", grad_result_score(result),
 *            grad_result_is_anomalous(result) ? "anomalous" : "good");
 *     const float *map = grad_result_map(result);   // width x height of the image
 *   }
 *   grad_result_free(result); grad_image_free(image);
 *   grad_context_free(ctx); grad_model_free(model);
 *
 * Conventions: every call that can fail returns a grad_status and leaves a
 * detailed message for grad_last_error(); *_free(NULL) is a no-op; handles
 * are opaque; a loaded model is read-only and may be used from many threads
 * at once, each with its own grad_context. Link with `pkg-config --libs grad`.
 */
#ifndef GRAD_GRAD_H
#define GRAD_GRAD_H

#include <grad/common.h>
#include <grad/image.h>
#include <grad/tensorfile.h>
#include <grad/backbone.h>
#include <grad/reduction.h>
#include <grad/store.h>
#include <grad/head.h>
#include <grad/model.h>
#include <grad/eval.h>
#include <grad/train.h>
#include <grad/synth.h>

#endif /* GRAD_GRAD_H */
