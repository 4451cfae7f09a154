/* F16 and BF16 to F32 by bit manipulation (exact, no rounding involved). */
#include <string.h>

#include "half.h"

static float from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

float grad__f16_to_f32(uint16_t bits) {
  uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) /* Inf or NaN: all-ones float exponent, payload kept */
    return from_bits(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return from_bits(sign); /* signed zero */
    /* Subnormal half: mantissa * 2^-24. Shift the leading one up to the
     * implicit-bit position; every subnormal half is a normal float. */
    int shift = 0;
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      shift++;
    }
    mantissa &= 0x3ffu;
    uint32_t float_exponent = (uint32_t)(127 - 15 + 1 - shift);
    return from_bits(sign | (float_exponent << 23) | (mantissa << 13));
  }
  return from_bits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

/* bfloat16 is the upper half of a float32, so widening is a shift. */
float grad__bf16_to_f32(uint16_t bits) { return from_bits((uint32_t)bits << 16); }

void grad__f16_to_f32_n(const unsigned char *src, size_t count, float *out) {
  for (size_t i = 0; i < count; i++)
    out[i] = grad__f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
}

void grad__bf16_to_f32_n(const unsigned char *src, size_t count, float *out) {
  for (size_t i = 0; i < count; i++)
    out[i] = grad__bf16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
}
