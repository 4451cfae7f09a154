/*
 * BatchNorm2d (docs/method.md section 5) for the decoder: x is n x channels x
 * plane (plane = H * W). Training normalises with the batch statistics
 * (biased variance) and updates the running statistics as torch does:
 * running = (1 - momentum) * running + momentum * batch, with the unbiased
 * variance. Inference uses the running statistics.
 */
#ifndef GRAD_BATCHNORM_H
#define GRAD_BATCHNORM_H

#include <stdbool.h>
#include <stddef.h>

#define GRAD__BN_EPS 1e-5
#define GRAD__BN_MOMENTUM 0.1

/*
 * y = gamma * (x - mean) * invstd + beta, then max(y, 0) when relu is set.
 * mean and invstd (channels each) receive the batch statistics for the
 * backward pass; running_mean/var are updated. Needs n * plane > 1.
 * y may alias x.
 */
void grad__bn_forward_train(const float *x, int n, int channels, size_t plane,
                            const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float *mean, float *invstd, bool relu, float *y);

/* y = gamma * (x - mean) * invstd + beta (then ReLU when set) with given
 * statistics, exactly as grad__bn_forward_train computes y; y may alias x.
 * The backward pass uses it to recompute activations it did not keep. */
void grad__bn_apply(const float *x, int n, int channels, size_t plane, const float *gamma,
                    const float *beta, const float *mean, const float *invstd, bool relu,
                    float *y);

/*
 * Backward of the training forward (without its relu) at input x:
 * dx is overwritten; dgamma and dbeta are accumulated (+=). dx may alias dy.
 * mask (may be NULL) fuses the backward of a ReLU that follows: dy counts
 * as 0 where mask, that ReLU's output, is not positive (torch's rule); the
 * dy so masked is also written to masked_dy when that is not NULL (it may
 * be dy itself). The channels run over libgrad's pool, in the CPU's vector
 * build; results do not depend on the thread count.
 */
void grad__bn_backward(const float *x, const float *dy, const float *mask, int n, int channels,
                       size_t plane, const float *gamma, const float *mean, const float *invstd,
                       float *dx, float *masked_dy, float *dgamma, float *dbeta);

/*
 * Fused forms for CRAD's block (store_crad.c), so each activation is read
 * and written once where the unfused passes took two or three.
 * Forward: y = act(bn(x)) (+ residual), and the mean of each plane of y.
 * The fused values are bit for bit those of the separate passes.
 */
typedef enum grad__bn_act { GRAD__BN_LINEAR, GRAD__BN_RELU, GRAD__BN_HARD_SWISH } grad__bn_act;

typedef struct grad__bn_epilogue {
  grad__bn_act act;
  const float *residual; /* added after act (n x channels x plane), or NULL */
  float *plane_means;    /* receives the mean of each plane of y (n x channels), or NULL */
} grad__bn_epilogue;

void grad__bn_forward_train_fused(const float *x, int n, int channels, size_t plane,
                                  const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, float *mean, float *invstd,
                                  const grad__bn_epilogue *epilogue, float *y);
void grad__bn_apply_fused(const float *x, int n, int channels, size_t plane, const float *gamma,
                          const float *beta, const float *mean, const float *invstd,
                          const grad__bn_epilogue *epilogue, float *y);

/* Backward: the dy BatchNorm sees is dy + plane_add[i * channels + c] when
 * plane_add is set, then times hard_swish'(bn(x)) (recomputed from x with
 * gamma and beta, as the forward's) when beta is set: the backward of a
 * per-plane broadcast add after BatchNorm and of a hard swish after it. */
typedef struct grad__bn_prologue {
  const float *plane_add; /* n x channels, or NULL */
  const float *beta;      /* set: dy passes through the hard swish after bn(x) */
} grad__bn_prologue;

void grad__bn_backward_fused(const float *x, const float *dy, const grad__bn_prologue *prologue,
                             int n, int channels, size_t plane, const float *gamma,
                             const float *mean, const float *invstd, float *dx, float *dgamma,
                             float *dbeta);

/* The fused forms' work on channels [c0, c1) only, on the calling thread
 * (in the CPU's vector build), for kernels that fuse BatchNorm into their
 * own per-channel passes (depthwise.c). y may be NULL: the statistics only. */
void grad__bn_forward_train_channels(const float *x, int n, int channels, size_t plane,
                                     const float *gamma, const float *beta,
                                     float *running_mean, float *running_var, float *mean,
                                     float *invstd, const grad__bn_epilogue *epilogue, float *y,
                                     int c0, int c1);
void grad__bn_backward_channels(const float *x, const float *dy,
                                const grad__bn_prologue *prologue, int n, int channels,
                                size_t plane, const float *gamma, const float *mean,
                                const float *invstd, float *dx, float *dgamma, float *dbeta,
                                int c0, int c1);

/* Inference with the running statistics, optionally followed by a ReLU;
 * y may alias x. */
void grad__bn_forward_eval(const float *x, int n, int channels, size_t plane,
                           const float *gamma, const float *beta, const float *running_mean,
                           const float *running_var, bool relu, float *y);

#endif
