/*
 * Internal side of the synthetic data set (grad_synth_write in
 * <grad/eval.h>): per-image rendering, shape rasterisers and noise.
 *
 * Rendering uses only IEEE basic arithmetic and sqrt (correctly rounded
 * everywhere) and no libm transcendental functions, so the pixels depend on
 * the seed alone, not on the platform's libm.
 */
#ifndef GRAD_SYNTH_INTERNAL_H
#define GRAD_SYNTH_INTERNAL_H

#include <stdint.h>

#include "core.h"
#include "rng.h"

enum { GRAD__SYNTH_CATEGORIES = 3, GRAD__SYNTH_MAX_DEFECTS = 4 };

/* What an image is: a train or test good image, or a test image with
 * defect type d (0-based, see grad_synth_defect_name). */
enum { GRAD__SYNTH_TRAIN = -2, GRAD__SYNTH_TEST_GOOD = -1 };

/* Channels of a class's images: 1 (gray) or 3 (RGB). */
int grad__synth_channels(int category);
/* Defect types of a class. */
int grad__synth_defect_count(int category);

/* The seed of one image, mixed from the data set seed and where the image
 * sits, so an image does not change when the counts around it do. */
uint64_t grad__synth_image_seed(uint64_t seed, int category, int kind, int index);

/*
 * Renders one size x size image of `category`. kind is GRAD__SYNTH_TRAIN,
 * GRAD__SYNTH_TEST_GOOD or a defect index. pixels gets the image
 * (size * size * channels bytes); for a defect, clean (may be NULL) gets the
 * same image without the defect and mask (size * size) gets 255 exactly
 * where pixels differs from clean, 0 elsewhere.
 */
grad_status grad__synth_render(int category, int kind, uint64_t image_seed, int size,
                               uint8_t *pixels, uint8_t *clean, uint8_t *mask);

/* ---- synth_shapes.c ----------------------------------------------------- */

/* Sets mask to 255 within `radius` of the polyline through n points
 * (xy pairs); pixel centres are at integer coordinates. */
void grad__shape_polyline(uint8_t *mask, int size, const float *xy, int n, float radius);
/* Sets mask to 255 inside the disc. */
void grad__shape_disc(uint8_t *mask, int size, float cx, float cy, float radius);
/* Sets mask to 255 inside the ellipse with semi-axes a along the unit
 * vector (ux, uy) and b across it. */
void grad__shape_ellipse(uint8_t *mask, int size, float cx, float cy, float ux, float uy,
                         float a, float b);

/* A random unit vector (uniform direction), without trigonometry. */
void grad__random_direction(grad__rng *rng, float *ux, float *uy);

/*
 * Smooth value noise in [0, 1): `octaves` layers of bilinearly interpolated
 * (smoothstep-weighted) random lattices, the first with lattice cells of
 * `cell` pixels, each next one half the cell and half the weight.
 * out gets size * size values. GRAD_E_NOMEM on allocation failure.
 */
grad_status grad__noise_fbm(grad__rng *rng, int size, float cell, int octaves, float *out);

#endif
