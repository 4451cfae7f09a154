/* Heatmap overlays and raw maps on disk. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "maps.h"
#include "safetensors.h"

int cli_make_dirs(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    errno = ENAMETOOLONG;
    return 0;
  }
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return 0;
    *p = '/';
  }
  return mkdir(path, 0755) == 0 || errno == EEXIST;
}

void cli_stem(const char *path, char *buf, size_t size) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  int n = dot ? (int)(dot - base) : (int)strlen(base);
  snprintf(buf, size, "%.*s", n, base);
}

grad_status cli_write_maps(const grad_model *model, const grad_image *image,
                           const grad_result *result, const char *dir, const char *stem) {
  char path[4096];
  grad_image *overlay = NULL;
  grad_status s = grad_overlay_render(model, image, result, &overlay);
  if (s == GRAD_OK) {
    snprintf(path, sizeof path, "%s/%s.png", dir, stem);
    s = grad_image_save_png(overlay, path);
  }
  grad_image_free(overlay);
  if (s != GRAD_OK) return s;

  grad__st_writer *w = NULL;
  s = grad__st_writer_create(&w);
  int64_t shape[2] = {grad_result_height(result), grad_result_width(result)};
  char score[32];
  snprintf(score, sizeof score, "%.9g", grad_result_score(result));
  if (s == GRAD_OK) s = grad__st_writer_add(w, "map", 2, shape, grad_result_map(result));
  if (s == GRAD_OK) s = grad__st_writer_meta(w, "score", score);
  snprintf(path, sizeof path, "%s/%s_map.safetensors", dir, stem);
  if (s == GRAD_OK) s = grad__st_writer_save(w, path);
  grad__st_writer_free(w);
  return s;
}
