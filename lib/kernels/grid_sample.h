/*
 * Bilinear grid sampling, as torch.nn.functional.grid_sample with
 * mode='bilinear', padding_mode='zeros', align_corners=False (docs/method.md
 * section 4). A grid holds `channels` planes of gh x gw cells (channel-major).
 * A point (x, y) in normalised coordinates: x runs along the width (torch's
 * grid[..., 0]) and y along the height (grid[..., 1]); -1 is the outer edge
 * of the first cell and +1 the outer edge of the last, so the cell position
 * is ((x + 1) * gw - 1) / 2. The four taps around it are weighted
 * bilinearly; taps outside the grid read 0 (and receive no gradient).
 */
#ifndef GRAD_GRID_SAMPLE_H
#define GRAD_GRID_SAMPLE_H

#include <stddef.h>

/* out[c * points + k] = grid channel c sampled at (x[k], y[k]). */
void grad__grid_sample(const float *grid, int channels, int gh, int gw, const float *x,
                       const float *y, size_t points, float *out);

/*
 * Backward of grad__grid_sample given dout (channels x points):
 * dgrid (channels x gh x gw) is accumulated (+=); dx and dy (points each)
 * are overwritten with dL/dx, dL/dy (the derivative of the bilinear
 * interpolant inside its cell, torch's convention at cell borders). Any of
 * the three outputs may be NULL to skip it.
 */
void grad__grid_sample_backward(const float *grid, int channels, int gh, int gw, const float *x,
                                const float *y, size_t points, const float *dout, float *dgrid,
                                float *dx, float *dy);

#endif
