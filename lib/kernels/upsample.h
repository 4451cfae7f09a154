/*
 * Bilinear resizing of float planes with align_corners=True, as
 * torch.nn.functional.interpolate(mode="bilinear", align_corners=True): the
 * corner samples of input and output coincide, so output pixel x reads the
 * input at x * (in_w - 1) / (out_w - 1) (0 when out_w == 1). No antialiasing:
 * this is the upsampling of feature and anomaly maps, not image resizing
 * (grad_plane_resize in <grad/image.h> is PIL's filter, for images).
 */
#ifndef GRAD_UPSAMPLE_H
#define GRAD_UPSAMPLE_H

/*
 * Resizes `planes` consecutive in_h x in_w planes into planes of
 * out_h x out_w. All sizes >= 1; in and out must not overlap. Weights and
 * the blend are computed in double and rounded once to float.
 */
void grad__resize_bilinear_ac(const float *in, int planes, int in_h, int in_w, float *out,
                              int out_h, int out_w);

#endif
