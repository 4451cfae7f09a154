/*
 * Backward pass of grad__conv2d (conv.h): given dy = dL/dy for
 * y = conv(x, weight) + bias, accumulates dL/dx, dL/dweight and dL/dbias.
 */
#ifndef GRAD_CONV_BACKWARD_H
#define GRAD_CONV_BACKWARD_H

#include "conv.h"

/*
 * x: n x Cin x h x w (the forward input), dy: n x Cout x oh x ow.
 * dx += W^T dy folded back by col2im; dweight += dy im2col(x)^T;
 * dbias += the sum of dy over positions. Each output may be NULL to skip
 * it; all three accumulate, so zero them first for a plain gradient.
 * Scratch comes from ws (released before return).
 */
grad_status grad__conv2d_backward(const grad__conv *conv, const float *weight, const float *x,
                                  int n, int h, int w, const float *dy, float *dx,
                                  float *dweight, float *dbias, grad_workspace *ws);

/* dbias[c] += the sum of dy over each image's plane of channel c (dy:
 * n x channels x plane), image by image, each image's sum in double. */
void grad__conv_bias_backward(const float *dy, int n, int channels, size_t plane, float *dbias);

#endif
