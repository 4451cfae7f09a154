/*
 * 2-D convolution as im2col + sgemm (grad__sgemm), shared by the backbone and the
 * decoder. Weights are Cout,Cin,K,K as in PyTorch. Square kernels, symmetric
 * zero padding, no dilation or groups.
 *
 * Two activation layouts are used: N,C,H,W (the public one, and the
 * decoder's) and C,N,H,W (the backbone's inner layout: with all images of a
 * batch side by side in every channel row, one GEMM covers the whole batch
 * and a 1x1 stride-1 convolution reads its input as the GEMM operand
 * directly). The general calls take the input's channel and image strides:
 * element (c, i, y, x) is at x[c * cstride + i * istride + y * w + x].
 */
#ifndef GRAD_CONV_H
#define GRAD_CONV_H

#include <stdbool.h>

#include "core.h"
#include "threading.h"

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
 * The general form: x has the strides described above (n images of
 * Cin x h x w); y is written in C,N,H,W order (Cout rows of n*oh*ow).
 * y = conv(x) + bias (bias may be NULL) + residual (C,N,H,W like y, may be
 * NULL), then max(y, 0) when relu is set. y must not alias x; residual may
 * not alias y. The GEMM runs over column blocks of about
 * GRAD__CONV_BLOCK_FLOATS unfolded values but at least GRAD__CONV_MIN_COLUMNS
 * columns, so scratch stays bounded and the epilogue finds its block still
 * in cache. Scratch comes from ws (released before return).
 */
enum { GRAD__CONV_BLOCK_FLOATS = 1 << 20, GRAD__CONV_MIN_COLUMNS = 2048 };
grad_status grad__conv2d_strided(const grad__conv *conv, const float *weight,
                                 const float *bias, const float *residual, bool relu,
                                 const float *x, size_t cstride, size_t istride, int n, int h,
                                 int w, float *y, grad_workspace *ws);

/* Floats of workspace grad__conv2d_strided takes for these sizes, for an
 * input whose images are contiguous in each channel row (C,N,H,W, or n = 1). */
size_t grad__conv_scratch_floats(const grad__conv *conv, int n, int h, int w);

/* Multiply-adds of one image through the convolution (for FLOP counts). */
double grad__conv_macs(const grad__conv *conv, int h, int w);

/*
 * Unfolds one image (Cin x h x w) into columns (Cin*K*K rows, oh*ow
 * columns), zero where the kernel reads padding. col2im is its adjoint:
 * it adds the columns back into an image that the caller zeroed.
 */
void grad__im2col(const grad__conv *conv, const float *image, int h, int w, float *columns);
void grad__col2im(const grad__conv *conv, const float *columns, int h, int w, float *image);

/*
 * im2col over a batch with the strides above, for the output columns
 * [first, first + count) of the n * oh * ow columns (image-major, then row,
 * then column): Cin*K*K rows of count values each.
 */
void grad__im2col_span(const grad__conv *conv, const float *x, size_t cstride, size_t istride,
                       int h, int w, size_t first, size_t count, float *columns);

#endif /* GRAD_CONV_H */
