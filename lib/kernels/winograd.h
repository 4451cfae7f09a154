/*
 * What libgrad's two Winograd 3x3 convolutions share (winograd_bf16.h,
 * winograd_f32.h): the shape of a call and the form of their entry points.
 * Both read and write oneDNN's blocked activations (nChw16c), so they sit
 * between oneDNN's primitives.
 */
#ifndef GRAD_WINOGRAD_H
#define GRAD_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

/* A 3x3, stride-1, padding-1 convolution of in_channels to out_channels
 * on h x w maps (outputs h x w). */
typedef struct grad__wino {
  int in_channels, out_channels;
  int h, w;
} grad__wino;

/* A kernel's entry points (grad__wino_bf16_kernel, grad__wino_f32_kernel),
 * for callers that pick one by data type or test both. */
typedef struct grad__wino_kernel {
  size_t element; /* bytes of an activation and of a transformed weight */
  size_t (*weight_bytes)(const grad__wino *s);
  void (*weights_lay)(const grad__wino *s, const float *oihw, void *out);
  size_t (*scratch_bytes)(const grad__wino *s, int threads);
  void (*run)(const grad__wino *s, int n, const void *src, const void *weights,
              const float *bias, void *dst, bool sum, bool relu, void *scratch, int threads);
} grad__wino_kernel;

#endif /* GRAD_WINOGRAD_H */
