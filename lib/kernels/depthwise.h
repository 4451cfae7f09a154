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

/* A BatchNorm beside the depthwise convolution in CRAD's block (batchnorm.h). */
typedef struct grad__dw_bn {
  const float *gamma, *beta;
  float *running_mean, *running_var; /* forward: updated */
  float *mean, *invstd;              /* batch statistics: forward out, backward in */
  float *dgamma, *dbeta;             /* backward: += */
} grad__dw_bn;

/*
 * CRAD's block between its 1x1 convolutions up to the SE gate (store_crad.c,
 * docs/store.md), channel by channel, so that one channel's n planes stay
 * in cache from one step to the next instead of each step streaming the
 * whole tensor (n x channels x h x w, kernel odd):
 *   forward: conv2 = depthwise(hswish(bn1(conv1))), e2 = bn2(conv2), both
 *     BatchNorms with the batch statistics; plane_means (n x channels) = the
 *     mean of each plane of e2;
 *   backward: d2 = dL/de2 + plane_add[plane] in, dL/dconv2 out (in place);
 *     d1 = dL/dconv1 out; the weight gradients add into dweight and the bn's
 *     dgamma, dbeta.
 * The values are those of the separate passes (grad__bn_forward_train_fused,
 * grad__depthwise_conv2d, ...). Planes too large for the fused buffers take
 * the separate passes, with scratch (n x channels x h x w) in between.
 */
typedef struct grad__dw_stage {
  int n, channels, h, w, kernel;
  const float *weight;
  float *dweight;
  grad__dw_bn bn1, bn2;
  const float *conv1;
  float *conv2, *e2, *plane_means; /* forward: out (conv2: backward in) */
  float *d2, *d1;                  /* backward */
  const float *plane_add;          /* backward */
  float *scratch;
} grad__dw_stage;

void grad__dw_stage_forward(const grad__dw_stage *s);
void grad__dw_stage_backward(const grad__dw_stage *s);

#endif
