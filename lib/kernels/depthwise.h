/*
 * Depthwise 2-D convolution (one K x K filter per channel, stride 1, zero
 * padding (K - 1) / 2, no bias), forward and backward, computed directly:
 * an im2col would move K*K times the data for K*K multiply-adds per value.
 * Layout N,C,H,W; weights C x 1 x K x K as torch's groups=C Conv2d.
 */
#ifndef GRAD_DEPTHWISE_H
#define GRAD_DEPTHWISE_H

#include <stdbool.h>

/* y = depthwise(x); y must not alias x. kernel is odd. */
void grad__depthwise_conv2d(const float *x, const float *weight, int n, int channels, int h,
                            int w, int kernel, float *y);

/*
 * Given dy = dL/dy at input x: dx += the input gradient (dx = it when
 * dx_set; dx may be NULL), dweight += the weight gradient (summed in
 * double per weight, image by image).
 */
void grad__depthwise_conv2d_backward(const float *x, const float *weight, const float *dy,
                                     int n, int channels, int h, int w, int kernel, float *dx,
                                     bool dx_set, float *dweight);

#endif
