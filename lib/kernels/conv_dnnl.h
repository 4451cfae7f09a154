/*
 * Convolutions for training on oneDNN: forward (training), backward data and
 * backward weights primitives for one convolution shape, created once and
 * reused every step. Activations and weights stay in the caller's N,C,H,W /
 * Cout,Cin,K,K layouts; each primitive runs in the layout oneDNN prefers
 * for the CPU (blocked, chosen by its features at run time) and reorders
 * move data in and out, the gradient reorders adding into the caller's
 * buffers. Same contract as grad__conv2d / grad__conv2d_backward (conv.h,
 * conv_backward.h) without bias. Built only with oneDNN (GRAD_HAVE_ONEDNN).
 *
 * A grad__conv_dnnl_set holds the primitives of every shape it has met
 * (a few: the decoder's 3x3 and 1x1 convolutions, for the full and the last
 * partial batch, per share of a batch: see conv_dnnl.c). It is not safe
 * to use from two threads at once.
 */
#ifndef GRAD_CONV_DNNL_H
#define GRAD_CONV_DNNL_H

#include "conv.h"

typedef struct grad__conv_dnnl_set grad__conv_dnnl_set;

/* An empty set; GRAD_E_NOMEM or GRAD_E_UNSUPPORTED (message set). */
grad_status grad__conv_dnnl_set_create(grad__conv_dnnl_set **out);
void grad__conv_dnnl_set_free(grad__conv_dnnl_set *set);

/* y = conv(x, weight), x: n x Cin x h x w, y: n x Cout x oh x ow. With
 * GRAD_PRECISION_BF16 the convolutions read x, weight and dy as bf16 (the
 * reorders in convert them) and sum in fp32; the caller's tensors, dx and
 * the weight gradient stay fp32. */
grad_status grad__conv_dnnl_forward(grad__conv_dnnl_set *set, const grad__conv *conv,
                                    grad_precision precision, const float *weight,
                                    const float *x, int n, int h, int w, float *y,
                                    grad_workspace *ws);

/* dx += dL/dx (dx = dL/dx when dx_set) and dweight += dL/dweight for
 * dy = dL/dy; either may be NULL to skip it. x is the forward input. */
grad_status grad__conv_dnnl_backward(grad__conv_dnnl_set *set, const grad__conv *conv,
                                     grad_precision precision, const float *weight,
                                     const float *x, int n, int h, int w, const float *dy,
                                     float *dx, bool dx_set, float *dweight,
                                     grad_workspace *ws);

#endif /* GRAD_CONV_DNNL_H */
