/* Image lists for plain folders and MVTec-layout categories. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dataset.h"

char *grad__path_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  while (la > 1 && a[la - 1] == '/') la--;
  char *joined = grad__malloc(la + lb + 2);
  if (!joined) return NULL;
  memcpy(joined, a, la);
  joined[la] = '/';
  memcpy(joined + la + 1, b, lb + 1);
  return joined;
}

void grad__path_list_free(grad__path_list *list) {
  for (size_t i = 0; i < list->count; i++) grad__free(list->paths[i]);
  grad__free(list->paths);
  memset(list, 0, sizeof *list);
}

static grad_status append_owned(grad__path_list *list, char *path) {
  if (!path) return grad__fail(GRAD_E_NOMEM, "out of memory listing images");
  if (list->count == list->capacity) {
    size_t capacity = list->capacity ? 2 * list->capacity : 64;
    char **grown = grad__realloc(list->paths, capacity * sizeof *grown);
    if (!grown) {
      grad__free(path);
      return grad__fail(GRAD_E_NOMEM, "out of memory listing images");
    }
    list->paths = grown;
    list->capacity = capacity;
  }
  list->paths[list->count++] = path;
  return GRAD_OK;
}

grad_status grad__path_list_add(grad__path_list *list, const char *path) {
  return append_owned(list, grad__strdup(path));
}

static bool has_image_extension(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") ||
                 !strcasecmp(dot, ".jpeg"));
}

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir that pass keep(); hidden ones skipped. */
static grad_status list_entries(const char *dir, bool (*keep)(const char *dir, const char *name),
                                grad__path_list *names) {
  DIR *d = opendir(dir);
  if (!d) return grad__fail(GRAD_E_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  grad_status status = GRAD_OK;
  struct dirent *entry;
  while (status == GRAD_OK && (entry = readdir(d)) != NULL) {
    if (entry->d_name[0] == '.' || !keep(dir, entry->d_name)) continue;
    status = grad__path_list_add(names, entry->d_name);
  }
  closedir(d);
  if (status == GRAD_OK && names->count > 1)
    qsort(names->paths, names->count, sizeof *names->paths, compare_strings);
  return status;
}

static bool keep_image(const char *dir, const char *name) {
  (void)dir;
  return has_image_extension(name);
}

static bool keep_folder(const char *dir, const char *name) {
  char *path = grad__path_join(dir, name);
  bool folder = path && is_dir(path);
  grad__free(path);
  return folder;
}

grad_status grad__list_images(const char *dir, grad__path_list *list) {
  grad__path_list names = {0};
  grad_status status = list_entries(dir, keep_image, &names);
  for (size_t i = 0; status == GRAD_OK && i < names.count; i++)
    status = append_owned(list, grad__path_join(dir, names.paths[i]));
  grad__path_list_free(&names);
  return status;
}

grad_status grad__list_subfolders(const char *dir, grad__path_list *list) {
  grad__path_list names = {0};
  grad_status status = list_entries(dir, keep_folder, &names);
  for (size_t i = 0; status == GRAD_OK && i < names.count; i++)
    status = append_owned(list, grad__path_join(dir, names.paths[i]));
  grad__path_list_free(&names);
  return status;
}

bool grad__is_category(const char *dir) {
  char *train = grad__path_join(dir, "train/good"), *test = grad__path_join(dir, "test");
  bool category = (train && is_dir(train)) || (test && is_dir(test));
  grad__free(train);
  grad__free(test);
  return category;
}

grad_status grad__training_images(const char *dir, grad__path_list *list) {
  if (!is_dir(dir)) return grad__fail(GRAD_E_IO, "%s: not a folder", dir);
  char *good = grad__is_category(dir) ? grad__path_join(dir, "train/good") : grad__strdup(dir);
  if (!good) return grad__fail(GRAD_E_NOMEM, "out of memory listing %s", dir);
  size_t before = list->count;
  grad_status status = grad__list_images(good, list);
  if (status == GRAD_OK && list->count == before)
    status = grad__fail(GRAD_E_MISSING, "%s: no PNG or JPEG images found", good);
  grad__free(good);
  return status;
}

void grad__test_set_free(grad__test_set *set) {
  for (size_t i = 0; i < set->count; i++) {
    grad__free(set->items[i].image);
    grad__free(set->items[i].mask);
    grad__free(set->items[i].defect);
  }
  grad__free(set->items);
  memset(set, 0, sizeof *set);
}

/* CATEGORY/ground_truth/DEFECT/STEM_mask.png for image NAME. */
static char *mask_path(const char *category, const char *defect, const char *name) {
  const char *dot = strrchr(name, '.');
  size_t stem = dot ? (size_t)(dot - name) : strlen(name);
  size_t n = strlen(category) + strlen(defect) + stem + 32;
  char *path = grad__malloc(n);
  if (path) snprintf(path, n, "%s/ground_truth/%s/%.*s_mask.png", category, defect, (int)stem, name);
  return path;
}

static grad_status add_defect(const char *category, const char *defect, grad__test_set *set,
                              size_t *capacity) {
  size_t sub_len = strlen(category) + strlen(defect) + 8;
  char *sub = grad__malloc(sub_len);
  if (!sub) return grad__fail(GRAD_E_NOMEM, "out of memory listing %s", category);
  snprintf(sub, sub_len, "%s/test/%s", category, defect);
  grad__path_list names = {0};
  grad_status status = list_entries(sub, keep_image, &names);
  bool good = strcmp(defect, "good") == 0;
  for (size_t i = 0; status == GRAD_OK && i < names.count; i++) {
    if (set->count == *capacity) {
      size_t grown_cap = *capacity ? 2 * *capacity : 64;
      grad__test_item *grown = grad__realloc(set->items, grown_cap * sizeof *grown);
      if (!grown) {
        status = grad__fail(GRAD_E_NOMEM, "out of memory listing %s", sub);
        break;
      }
      set->items = grown;
      *capacity = grown_cap;
    }
    grad__test_item *item = &set->items[set->count];
    memset(item, 0, sizeof *item);
    item->image = grad__path_join(sub, names.paths[i]);
    item->defect = grad__strdup(defect);
    bool masked = !good && set->has_masks;
    item->anomalous = !good;
    item->mask = masked ? mask_path(category, defect, names.paths[i]) : NULL;
    set->count++;
    if (!item->image || !item->defect || (masked && !item->mask)) {
      status = grad__fail(GRAD_E_NOMEM, "out of memory listing %s", sub);
    } else if (masked) {
      struct stat st;
      if (stat(item->mask, &st) != 0)
        status = grad__fail(GRAD_E_MISSING, "%s: mask %s not found", item->image, item->mask);
    }
  }
  grad__path_list_free(&names);
  grad__free(sub);
  return status;
}

grad_status grad__category_test_set(const char *category, grad__test_set *set) {
  memset(set, 0, sizeof *set);
  char *test = grad__path_join(category, "test");
  if (!test) return grad__fail(GRAD_E_NOMEM, "out of memory listing %s", category);
  /* Many data sets label images only: without a ground_truth folder the
   * set has no masks; with one, every defect image needs its mask. */
  char *truth = grad__path_join(category, "ground_truth");
  set->has_masks = truth && is_dir(truth);
  grad__free(truth);
  grad__path_list defects = {0};
  grad_status status = list_entries(test, keep_folder, &defects);
  grad__free(test);
  size_t capacity = 0;
  for (size_t i = 0; status == GRAD_OK && i < defects.count; i++)
    status = add_defect(category, defects.paths[i], set, &capacity);
  grad__path_list_free(&defects);
  if (status == GRAD_OK && set->count == 0)
    status = grad__fail(GRAD_E_MISSING, "%s/test: no test images found", category);
  if (status != GRAD_OK) grad__test_set_free(set);
  return status;
}
