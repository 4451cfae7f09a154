/*
 * 2-D convolution as im2col + cblas_sgemm, shared by the backbone and the
 * decoder. Layouts are N,C,H,W float32; weights are Cout,Cin,K,K as in
 * PyTorch. Square kernels, symmetric zero padding, no dilation or groups.
 */
#ifndef GRAD_CONV_H
#define GRAD_CONV_H

#include <stdbool.h>

#include "core.h"

typedef struct grad__conv {
  int in_channels;
  int out_channels;
  int kernel;
  int stride;
  int pad;
} grad__conv;

/* Output size along one axis; <= 0 when the input is too small. */
int grad__conv_out_size(const grad__conv *conv, int in);

/*
 * y = conv(x, weight) + bias, then max(y, 0) when relu is set.
 * bias may be NULL. x: n x Cin x h x w, y: n x Cout x oh x ow (no aliasing).
 * Scratch comes from ws (released again before return).
 */
grad_status grad__conv2d(const grad__conv *conv, const float *weight, const float *bias,
                         bool relu, const float *x, int n, int h, int w, float *y,
                         grad_workspace *ws);

/*
 * Unfolds one image (Cin x h x w) into columns (Cin*K*K rows, oh*ow
 * columns), zero where the kernel reads padding. col2im is its adjoint:
 * it adds the columns back into an image that the caller zeroed.
 */
void grad__im2col(const grad__conv *conv, const float *image, int h, int w, float *columns);
void grad__col2im(const grad__conv *conv, const float *columns, int h, int w, float *image);

#endif /* GRAD_CONV_H */
