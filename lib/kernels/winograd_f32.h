/*
 * 3x3 stride-1 convolutions in fp32 by Winograd F(4x4, 3x3) on AVX-512
 * (docs/backbone.md, "Engines"): each 4x4 block of outputs comes from a 6x6
 * block of inputs through 36 products instead of 144, a quarter of the
 * multiplications. oneDNN has the same algorithm for these CPUs; this one
 * measured faster on every shape tried (11% on the decoder's 384-channel
 * maps, 25-36% on resnet18's), its products running from L2 one position
 * at a time.
 *
 * Layouts are oneDNN's blocked activations with AVX-512 (nChw16c: channels
 * in blocks of 16 innermost), fp32, so these convolutions sit between
 * oneDNN's. Weights are transformed in double and rounded to fp32 once.
 */
#ifndef GRAD_WINOGRAD_F32_H
#define GRAD_WINOGRAD_F32_H

#include <stdbool.h>
#include <stddef.h>

#include "conv.h"
#include "winograd.h"

/* True when the CPU has AVX-512 (F) and the build targets x86-64. */
bool grad__wino_f32_available(void);

/* True when `shape` is one this kernel runs: 3x3, stride 1, padding 1,
 * channels in and out multiples of 16. */
bool grad__wino_f32_fits(const grad__conv *shape);

/* Bytes of the transformed weights of shape s. */
size_t grad__wino_f32_weight_bytes(const grad__wino *s);

/* The weights, fp32 Cout,Cin,3,3, transformed (G g G^T) and laid out for
 * the products, into out (weight_bytes, 64-byte aligned). */
void grad__wino_f32_weights_lay(const grad__wino *s, const float *oihw, void *out);

/* Scratch bytes a call with `threads` threads takes. */
size_t grad__wino_f32_scratch_bytes(const grad__wino *s, int threads);

/*
 * dst = relu?(conv(src) + bias (+ dst where sum)) for n images: src and dst
 * nChw16c fp32 (n x channels x h x w), weights from weights_lay. `threads`
 * threads share each image's tiles (an OpenMP team where the build has
 * OpenMP); every output is the same whatever the thread count. Only where
 * grad__wino_f32_available().
 */
void grad__wino_f32_run(const grad__wino *s, int n, const void *src, const void *weights,
                        const float *bias, void *dst, bool sum, bool relu, void *scratch,
                        int threads);

/* The entry points above as one grad__wino_kernel. */
extern const grad__wino_kernel grad__wino_f32_kernel;

#endif /* GRAD_WINOGRAD_F32_H */
