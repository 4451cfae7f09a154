/*
 * 3x3 stride-1 convolutions in bf16 by Winograd F(2x2, 3x3), for CPUs
 * whose bf16 is AVX512_BF16 dot products (docs/backbone.md, "bf16"):
 * each 2x2 block of outputs comes from a 4x4 block of inputs through 16
 * products instead of 36, a 2.25-fold cut of the multiplications, where
 * oneDNN has only direct bf16 kernels.
 *
 * Layouts are oneDNN's blocked activations with AVX-512 (nChw16c: channels
 * in blocks of 16 innermost), bf16, so these convolutions sit between
 * oneDNN's in the backbone. The transforms run in fp32; the transformed
 * inputs and weights are rounded to bf16 once, and the products are
 * summed in fp32 (vdpbf16ps), as oneDNN's bf16 kernels do.
 */
#ifndef GRAD_WINOGRAD_BF16_H
#define GRAD_WINOGRAD_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conv.h"
#include "winograd.h"

/* True when the CPU has AVX512_BF16 (and the build targets x86-64). */
bool grad__wino_bf16_available(void);

/* True when `shape` is one this kernel runs: 3x3, stride 1, padding 1,
 * in_channels a multiple of 16 and out_channels of 32. */
bool grad__wino_bf16_fits(const grad__conv *shape);

/* Bytes of the transformed weights of shape s. */
size_t grad__wino_bf16_weight_bytes(const grad__wino *s);

/* The weights, fp32 Cout,Cin,3,3, transformed (G g G^T), rounded to bf16
 * and laid out for the products, into out (weight_bytes, 64-byte aligned). */
void grad__wino_bf16_weights_lay(const grad__wino *s, const float *oihw, void *out);

/* Scratch bytes a call with `threads` threads takes. */
size_t grad__wino_bf16_scratch_bytes(const grad__wino *s, int threads);

/*
 * dst = relu?(conv(src) + bias (+ dst where sum)) for n images: src and
 * dst nChw16c bf16 (n x channels x h x w), weights from weights_lay, fp32
 * bias. `threads` threads share each image's tiles (1: the caller alone;
 * more: an OpenMP team where the build has OpenMP, else libgrad's pool). Every output is the same whatever the thread count.
 * Only where grad__wino_bf16_available().
 */
void grad__wino_bf16_run(const grad__wino *s, int n, const void *src, const void *weights,
                         const float *bias, void *dst, bool sum, bool relu, void *scratch,
                         int threads);

/* The entry points above as one grad__wino_kernel. */
extern const grad__wino_kernel grad__wino_bf16_kernel;

#endif /* GRAD_WINOGRAD_BF16_H */
