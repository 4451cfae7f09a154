/*
 * IEEE half (F16) and bfloat16 (BF16) to float32. Both conversions are
 * exact for every input: each half and bfloat16 value, subnormals included,
 * is representable in float32. Infinities keep their sign; NaNs stay NaN
 * with their sign and payload bits shifted into the float32 mantissa.
 */
#ifndef GRAD_HALF_H
#define GRAD_HALF_H

#include <stddef.h>
#include <stdint.h>

float grad__f16_to_f32(uint16_t bits);
float grad__bf16_to_f32(uint16_t bits);

/* Converts count little-endian 2-byte values at src (any alignment) into out. */
void grad__f16_to_f32_n(const unsigned char *src, size_t count, float *out);
void grad__bf16_to_f32_n(const unsigned char *src, size_t count, float *out);

#endif
