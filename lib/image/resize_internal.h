/*
 * The bilinear resize's (image_resize.c) vector build of the horizontal
 * 8-bit pass (resize_vbmi.c), and the switch tests use to compare every
 * build of the passes with the portable code.
 */
#ifndef GRAD_RESIZE_INTERNAL_H
#define GRAD_RESIZE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "threading.h" /* grad__isa */

/* Fixed-point fraction bits of the 8-bit passes: 32 - 8 - 2, as in PIL. */
#define GRAD_RESIZE_FIXED_BITS 22

/*
 * The horizontal 8-bit pass with AVX-512 VBMI: rows [0, rows) of in (in_w
 * pixels of ch bytes) to out_w pixels, with the filter of one axis (per
 * output pixel: bounds[2o] first input pixel, bounds[2o + 1] taps; weights
 * ksize fixed-point weights, zero past the taps). The same bytes as the
 * portable pass. False, having written nothing, where the CPU lacks the
 * instructions, the taps of one sample span more than the vector's window
 * (shrinking by about 40 times or more) or memory for the plan runs out: the
 * caller then runs the portable pass.
 */
bool grad__resize_rows_u8_vbmi(const uint8_t *in, int in_w, int ch, int rows, uint8_t *out,
                               int out_w, const int *bounds, const int32_t *weights, int ksize);

/*
 * The most capable builds the resize passes may use where the CPU has them
 * (GRAD__ISA_AVX512 by default: all); tests lower it to compare each build
 * with the portable loops (GRAD__ISA_OLDER). Returns the previous cap. Set
 * it only while no resize runs.
 */
grad__isa grad__resize_isa_cap(grad__isa cap);

#endif /* GRAD_RESIZE_INTERNAL_H */
