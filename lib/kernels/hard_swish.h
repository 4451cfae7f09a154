/*
 * MobileNetV3's hard activations (CRAD's decoder block, docs/method.md) as
 * always-inline functions, shared by the block's passes (store_crad.c) and
 * the BatchNorm kernels that fuse them (batchnorm.c). Branch-free, so the
 * loops that call them vectorise in the per-ISA builds (isa_internal.h);
 * every build rounds alike, as torch's order of operations does.
 */
#ifndef GRAD_HARD_SWISH_H
#define GRAD_HARD_SWISH_H

#include "isa_internal.h" /* INLINE */

/* relu6(x + 3) / 6 */
INLINE float grad__hard_sigmoid(float x) {
  float r = x + 3.0f;
  r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
  return r / 6.0f;
}

/* x * relu6(x + 3) / 6, in torch's order of operations. */
INLINE float grad__hard_swish(float x) {
  float r = x + 3.0f;
  r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
  return x * r / 6.0f;
}

/* d hard_swish / dx; at -3 and 3 the one-sided values torch's relu6 gives
 * (its mask is open at both ends). The middle value is computed for every
 * x and then selected, so no branch stops the vectoriser. */
INLINE float grad__hard_swish_grad(float x) {
  const float mid = (2.0f * x + 3.0f) / 6.0f;
  return x <= -3.0f ? 0.0f : x >= 3.0f ? 1.0f : mid;
}

#endif /* GRAD_HARD_SWISH_H */
