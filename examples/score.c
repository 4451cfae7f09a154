/*
 * Embedding scoring in a C program: load a model, score a PNG or JPEG,
 * print the score and decision, write the anomaly map as a gray PNG.
 *
 *   score MODEL IMAGE [MAP.png]
 */
#include <grad/grad.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL IMAGE [MAP.png]\n", argv[0]);
    return 2;
  }
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  grad_image *image = NULL;
  grad_result *result = NULL;
  int code = 1;
  if (grad_model_load(argv[1], &model) != GRAD_OK || grad_context_create(model, &ctx) != GRAD_OK ||
      grad_image_load(argv[2], &image) != GRAD_OK ||
      grad_model_score(model, ctx, image, &result) != GRAD_OK) {
    fprintf(stderr, "libgrad: %s\n", grad_last_error());
    goto done;
  }
  printf("%s: score %.4f, normalised %.3f, %s\n", argv[2], grad_result_score(result),
         grad_result_normalized_score(result),
         grad_result_is_anomalous(result) ? "ANOMALOUS" : "good");
  if (argc > 3) {
    /* The map is in score units; scale it to 8 bits for viewing. */
    int w = grad_result_width(result), h = grad_result_height(result);
    const float *map = grad_result_map(result);
    float hi = 1e-12f;
    for (int i = 0; i < w * h; i++) hi = map[i] > hi ? map[i] : hi;
    unsigned char *gray = malloc((size_t)w * h);
    for (int i = 0; i < w * h; i++) gray[i] = (unsigned char)(255.0f * map[i] / hi);
    grad_status s = grad_png_write(argv[3], gray, w, h, 1, (size_t)w);
    free(gray);
    if (s != GRAD_OK) {
      fprintf(stderr, "libgrad: %s\n", grad_last_error());
      goto done;
    }
  }
  code = 0;
done:
  grad_result_free(result);
  grad_image_free(image);
  grad_context_free(ctx);
  grad_model_free(model);
  return code;
}
