/*
 * Finding images on disk: plain folders of PNG/JPEG files and MVTec AD
 * categories (CLASS/train/good, CLASS/test/DEFECT,
 * CLASS/ground_truth/DEFECT/NAME_mask.png). Lists are sorted by path so
 * that training and evaluation are deterministic.
 */
#ifndef GRAD_DATASET_H
#define GRAD_DATASET_H

#include "core.h"

typedef struct grad__path_list {
  char **paths;
  size_t count;
  size_t capacity;
} grad__path_list;

void grad__path_list_free(grad__path_list *list);
grad_status grad__path_list_add(grad__path_list *list, const char *path);

/* Appends the PNG/JPEG files directly inside dir (by extension, any case),
 * sorted. A missing or unreadable folder gives GRAD_E_IO. */
grad_status grad__list_images(const char *dir, grad__path_list *list);

/* Appends the paths of the folders directly inside dir, sorted. */
grad_status grad__list_subfolders(const char *dir, grad__path_list *list);

/* True when dir looks like an MVTec category (it has train/good or test). */
bool grad__is_category(const char *dir);

/* The normal training images of a folder: DIR/train/good for a category,
 * else the images inside DIR. No image at all gives GRAD_E_MISSING. */
grad_status grad__training_images(const char *dir, grad__path_list *list);

/* One test image of a category: its defect type ("good" for normal ones)
 * and the path of its mask (NULL for good images). */
typedef struct grad__test_item {
  char *image;
  char *mask;      /* NULL for good images, and for all when the set has no masks */
  char *defect;
  bool anomalous;  /* not in test/good */
} grad__test_item;

typedef struct grad__test_set {
  grad__test_item *items;
  size_t count;
  bool has_masks;  /* CATEGORY/ground_truth exists: every defect image has its mask */
} grad__test_set;

/* All of CATEGORY/test/<defect>/ images, defects in sorted order. A defect
 * image whose mask is missing gives GRAD_E_MISSING naming it. */
grad_status grad__category_test_set(const char *category, grad__test_set *set);
void grad__test_set_free(grad__test_set *set);

/* Joins a and b with one '/', in a new string (NULL on allocation failure). */
char *grad__path_join(const char *a, const char *b);

#endif
