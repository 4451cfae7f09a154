/* Heatmap overlays: a colour map of the anomaly map blended over the image. */
#include <math.h>
#include <string.h>

#include "model_internal.h"

/* A blue -> cyan -> green -> yellow -> red ramp ("jet"-like) at t in [0, 1]. */
static void colour_at(double t, uint8_t rgb[3]) {
  double r = fmin(fmax(1.5 - fabs(4.0 * t - 3.0), 0.0), 1.0);
  double g = fmin(fmax(1.5 - fabs(4.0 * t - 2.0), 0.0), 1.0);
  double b = fmin(fmax(1.5 - fabs(4.0 * t - 1.0), 0.0), 1.0);
  rgb[0] = (uint8_t)lrint(255 * r);
  rgb[1] = (uint8_t)lrint(255 * g);
  rgb[2] = (uint8_t)lrint(255 * b);
}

/* A mask pixel on the border of its region: set, with a 4-neighbour unset. */
static bool on_contour(const uint8_t *mask, int w, int h, int x, int y) {
  if (!mask[(size_t)y * w + x]) return false;
  return (x == 0 || !mask[(size_t)y * w + x - 1]) || (x == w - 1 || !mask[(size_t)y * w + x + 1]) ||
         (y == 0 || !mask[(size_t)(y - 1) * w + x]) || (y == h - 1 || !mask[(size_t)(y + 1) * w + x]);
}

grad_status grad_overlay_render(const grad_model *model, const grad_image *image,
                                const grad_result *result, grad_image **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_overlay_render: out is NULL");
  *out = NULL;
  if (!model || !image || !result)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_overlay_render: NULL argument");
  int w = result->width, h = result->height;
  if (grad_image_width(image) != w || grad_image_height(image) != h)
    return grad__fail(GRAD_E_SHAPE, "grad_overlay_render: image is %dx%d, result %dx%d",
                      grad_image_width(image), grad_image_height(image), w, h);
  size_t pixels = (size_t)w * h;
  float *level = grad__malloc_array(pixels, sizeof(float));
  uint8_t *rgb = grad__malloc_array(pixels, 3);
  if (!level || !rgb) {
    grad__free(level), grad__free(rgb);
    return grad__fail(GRAD_E_NOMEM, "out of memory rendering a %dx%d overlay", w, h);
  }
  /* Colour by the calibrated normalised map (threshold at mid-ramp); an
   * uncalibrated model falls back to the map's own min-max range. */
  grad_status s = grad_head_normalize_map(model->head, result->map, pixels, level);
  if (s != GRAD_OK) {
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < pixels; i++) {
      lo = fminf(lo, result->map[i]);
      hi = fmaxf(hi, result->map[i]);
    }
    for (size_t i = 0; i < pixels; i++)
      level[i] = hi > lo ? (result->map[i] - lo) / (hi - lo) : 0.0f;
  }
  const uint8_t *px = grad_image_pixels(image);
  int channels = grad_image_channels(image);
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      uint8_t heat[3];
      colour_at(level[i], heat);
      for (int k = 0; k < 3; k++) {
        uint8_t base = px[i * channels + (channels == 3 ? k : 0)];
        rgb[i * 3 + k] = (uint8_t)((base + heat[k] + 1) / 2);
      }
      if (result->mask && on_contour(result->mask, w, h, x, y))
        memset(rgb + i * 3, 255, 3);
    }
  }
  s = grad_image_from_pixels(rgb, w, h, 3, (size_t)w * 3, out);
  grad__free(level);
  grad__free(rgb);
  return s;
}
