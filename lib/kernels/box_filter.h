/*
 * Box filtering and average pooling of one float plane through a summed-area
 * table (integral image) kept in double: every window sum is four look-ups,
 * O(1) per output pixel whatever the window size, and the double accumulation
 * keeps the subtraction of large partial sums exact enough that no drift
 * builds up across the plane (float would lose ~log2(h*w) bits).
 */
#ifndef GRAD_BOX_FILTER_H
#define GRAD_BOX_FILTER_H

#include <stddef.h>

/* Doubles the integral image of an h x w plane needs: (h + 1) * (w + 1). */
size_t grad__integral_size(int h, int w);

/* integral[(y) * (w + 1) + x] = sum of in[0..y-1][0..x-1]. */
void grad__integral_image(const float *in, int h, int w, double *integral);

/*
 * The k x k window sums at stride 1 over the plane padded by `pad` zeros on
 * every side, multiplied by scale: with scale = 1 / (k * k) this is
 * avg_pool2d(k, stride 1, padding pad) counting the padding
 * (count_include_pad=True). out is (h + 2 pad - k + 1) x (w + 2 pad - k + 1);
 * nothing is written when either side would be < 1. integral is scratch of
 * grad__integral_size(h, w) doubles; in and out must not overlap.
 */
void grad__box_filter(const float *in, int h, int w, int k, int pad, double scale,
                      float *out, double *integral);

/*
 * The largest mean over all k x k windows lying inside the plane (stride 1,
 * no padding): max of avg_pool2d(k, stride 1). Requires 1 <= k <= min(h, w).
 * integral is scratch as above.
 */
double grad__avg_pool_max(const float *in, int h, int w, int k, double *integral);

#endif
