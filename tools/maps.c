/* Heatmap overlays and raw maps on disk. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "inputs.h"
#include "maps.h"

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

  grad_tensorfile_writer *w = NULL;
  s = grad_tensorfile_writer_create(&w);
  int64_t shape[2] = {grad_result_height(result), grad_result_width(result)};
  char score[32];
  snprintf(score, sizeof score, "%.9g", grad_result_score(result));
  if (s == GRAD_OK) s = grad_tensorfile_writer_add_f32(w, "map", 2, shape, grad_result_map(result));
  if (s == GRAD_OK) s = grad_tensorfile_writer_set_meta(w, "score", score);
  snprintf(path, sizeof path, "%s/%s_map.safetensors", dir, stem);
  if (s == GRAD_OK) s = grad_tensorfile_writer_save(w, path);
  grad_tensorfile_writer_free(w);
  return s;
}

/* The folder part of path, "/" for a top-level file. */
static size_t folder_length(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash == path ? 1 : (size_t)(slash - path);
}

/* Name from rel (a path under the common folder): without its extension,
 * or with the extension's dot as '_' (keep_extension). */
static char *name_from(const char *rel, int keep_extension) {
  char *name = strdup(rel);
  if (!name) return NULL;
  char *base = strrchr(name, '/');
  char *dot = strrchr(base ? base : name, '.');
  if (dot && dot != (base ? base + 1 : name)) {
    if (keep_extension) *dot = '_';
    else *dot = '\0';
  }
  return name;
}

typedef struct named {
  const char *name, *real;
  size_t index;
  int clash;
} named;

/* real (an absolute path) relative to its first root bytes. */
static const char *relative(const char *real, size_t root) {
  return real + root + (real[root] == '/');
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

void cli_map_names_free(char **names, size_t count) {
  if (!names) return;
  for (size_t i = 0; i < count; i++) free(names[i]);
  free(names);
}

/* 1 when the file at path exists and is the same file as one of the inputs. */
static int is_an_input(const char *path, char *const *real, size_t count) {
  char resolved[PATH_MAX];
  if (!realpath(path, resolved)) return 0;
  for (size_t i = 0; i < count; i++)
    if (real[i] && !strcmp(real[i], resolved)) return 1;
  return 0;
}

int cli_map_names(const cli_paths *inputs, const char *dir, const char *command, char ***out) {
  size_t n = inputs->count;
  char **real = calloc(n, sizeof *real), **names = calloc(n, sizeof *names);
  named *sorted = calloc(n, sizeof *sorted);
  int ok = real && names && sorted;
  errno = 0;
  size_t root = 0;
  const char *first = NULL;
  for (size_t i = 0; ok && i < n; i++) {
    real[i] = realpath(inputs->paths[i], NULL);
    if (!real[i]) continue;
    if (!first) {
      first = real[i];
      root = folder_length(first);
    }
    size_t k = 0; /* the common prefix, cut back to a folder boundary */
    while (k < root && real[i][k] == first[k]) k++;
    if (root > 1 && (k < root || real[i][k] != '/')) {
      size_t j = k - 1;
      while (j > 0 && first[j] != '/') j--;
      root = j ? j : 1;
    }
  }
  /* names without extensions first; inputs that collide keep theirs */
  for (int pass = 0; ok && pass < 2; pass++) {
    size_t m = 0;
    for (size_t i = 0; ok && i < n; i++) {
      if (!real[i]) continue;
      if (pass == 0) ok = (names[i] = name_from(relative(real[i], root), 0)) != NULL;
      sorted[m++] = (named){names[i], real[i], i, 0};
    }
    qsort(sorted, m, sizeof *sorted, by_name);
    for (size_t j = 1; ok && j < m; j++) {
      if (strcmp(sorted[j - 1].name, sorted[j].name) || !strcmp(sorted[j - 1].real, sorted[j].real))
        continue;
      if (pass == 1) {
        fprintf(stderr, "grad %s: %s and %s would both write the maps %s/%s.png; score them "
                "in separate runs\n", command, sorted[j - 1].real, sorted[j].real, dir,
                sorted[j].name);
        ok = 0;
      }
      sorted[j - 1].clash = sorted[j].clash = 1;
    }
    for (size_t j = 0; ok && pass == 0 && j < m; j++) {
      if (!sorted[j].clash) continue;
      size_t i = sorted[j].index;
      free(names[i]);
      ok = (names[i] = name_from(relative(real[i], root), 1)) != NULL;
    }
  }
  for (size_t i = 0; ok && i < n; i++) {
    if (!names[i]) continue;
    char path[4096];
    const char *suffix[2] = {".png", "_map.safetensors"};
    for (int k = 0; ok && k < 2; k++) {
      snprintf(path, sizeof path, "%s/%s%s", dir, names[i], suffix[k]);
      if (is_an_input(path, real, n)) {
        fprintf(stderr, "grad %s: the map %s would replace an input image; choose another "
                "--maps folder\n", command, path);
        ok = 0;
      }
    }
  }
  if (!real || !names || !sorted) fprintf(stderr, "grad %s: out of memory\n", command);
  for (size_t i = 0; real && i < n; i++) free(real[i]);
  free(real);
  free(sorted);
  if (!ok) {
    cli_map_names_free(names, n);
    names = NULL;
  }
  *out = names;
  return ok;
}
