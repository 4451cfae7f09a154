/*
 * Depthwise convolution (one k x k filter per channel) fused with its bias
 * (BatchNorm folded) and swish, as EfficientNet's MBConv blocks use it, and
 * the swish epilogue of pointwise convolutions. Direct loops, no im2col:
 * the layer is memory-bound, so each output row is accumulated in place
 * and activated while it is still in L1, and the per-channel sum that
 * squeeze-and-excitation needs is taken in the same pass.
 *
 * Each pass exists as an AVX-512 and an AVX2 build of the same C code and a
 * baseline one, chosen once by the CPU's features at run time; the
 * *_reference functions are the plain definitions the tests compare with.
 * (depthwise.h is the decoder's: stride 1, no epilogue, with a backward
 * pass for training.)
 */
#ifndef GRAD_DEPTHWISE_FUSED_H
#define GRAD_DEPTHWISE_FUSED_H

#include <stddef.h>

/* Geometry of one plane: input h x w, output oh x ow; padding may be
 * asymmetric (TF "same"): the bottom/right padding follows from the sizes.
 * y[oy][ox] reads x[oy * stride + ky - pad_top][ox * stride + kx - pad_left],
 * zero outside. */
typedef struct grad__dw_shape {
  int kernel, stride;
  int h, w, oh, ow;
  int pad_top, pad_left;
} grad__dw_shape;

enum { GRAD__DW_MAX_KERNEL = 15 };

/*
 * For channels c in [c0, c1): y_c = swish(depthwise(x_c, weight_c) + bias_c),
 * swish(v) = v * sigmoid(v); x holds planes of h x w, y planes of oh x ow,
 * weight k x k floats per channel (odd k <= GRAD__DW_MAX_KERNEL). sums (may
 * be NULL) receives the sum of each output plane (sums[c]).
 */
void grad__depthwise_swish(const grad__dw_shape *s, const float *x, const float *weight,
                           const float *bias, int c0, int c1, float *y, float *sums);
void grad__depthwise_swish_reference(const grad__dw_shape *s, const float *x,
                                     const float *weight, const float *bias, int c0, int c1,
                                     float *y, float *sums);

/* Rows r in [r0, r1) of a matrix with row stride ld: y[r][0..cols) +=
 * bias[r] (+ residual[r][...], same stride, may be NULL), then swish when
 * swish is set. */
void grad__bias_act_rows(float *y, size_t ld, size_t cols, int r0, int r1, const float *bias,
                         const float *residual, int swish);
void grad__bias_act_rows_reference(float *y, size_t ld, size_t cols, int r0, int r1,
                                   const float *bias, const float *residual, int swish);

/* v[i] = tanh(v[i]) (relative error about 3e-7 against tanhf, which
 * _reference uses), over the pool when count is large. */
void grad__tanh_inplace(float *v, size_t count);
void grad__tanh_reference(float *v, size_t count);

/* The build in use ("avx512", "avx2" or "baseline") is grad_kernels_isa()
 * (<grad/common.h>, experimental). */
/* Forces a build for tests: "avx512", "avx2", "baseline" (when the CPU has
 * it); NULL restores the automatic choice. Returns 0 when not available.
 * Not thread-safe: tests only. */
int grad__depthwise_force_isa(const char *isa);

#endif /* GRAD_DEPTHWISE_FUSED_H */
