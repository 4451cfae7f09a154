/*
 * What libgrad's two Winograd 3x3 convolutions share (winograd_bf16.h,
 * winograd_f32.h): the shape of a call. Both read and write oneDNN's
 * blocked activations (nChw16c), so they sit between oneDNN's primitives.
 */
#ifndef GRAD_WINOGRAD_H
#define GRAD_WINOGRAD_H

/* A 3x3, stride-1, padding-1 convolution of in_channels to out_channels
 * on h x w maps (outputs h x w). */
typedef struct grad__wino {
  int in_channels, out_channels;
  int h, w;
} grad__wino;

#endif /* GRAD_WINOGRAD_H */
