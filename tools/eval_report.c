/* The per-category evaluation table shared by `grad eval` and `grad demo`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "eval_report.h"
#include "maps.h"
#include "progress.h"

typedef struct row {
  char name[256];
  grad_eval_summary summary;
} row;

typedef struct image_hook {
  const grad_model *model;
  const char *maps_dir;  /* .../CATEGORY, or NULL */
  cli_progress bar;
  grad_status write_status;
} image_hook;

static int on_image(const char *path, const char *defect, const grad_image *image,
                    const grad_result *result, int index, int total, void *user) {
  image_hook *hook = user;
  if (hook->maps_dir && hook->write_status == GRAD_OK) {
    char dir[4096], stem[1024];
    snprintf(dir, sizeof dir, "%s/%s", hook->maps_dir, defect);
    cli_stem(path, stem, sizeof stem);
    if (!cli_make_dirs(dir)) hook->write_status = GRAD_E_IO;
    else hook->write_status = cli_write_maps(hook->model, image, result, dir, stem);
  }
  char detail[64];
  snprintf(detail, sizeof detail, "%d/%d images", index + 1, total);
  cli_progress_update(&hook->bar, index + 1, total, detail, -1);
  return hook->write_status != GRAD_OK;
}

/* The categories to evaluate: root itself, or its sub-folders that are. */
static grad_status find_categories(const char *root, grad__path_list *out) {
  if (grad__is_category(root)) return grad__path_list_add(out, root);
  grad__path_list all = {0};
  grad_status s = grad__list_subfolders(root, &all);
  for (size_t i = 0; s == GRAD_OK && i < all.count; i++)
    if (grad__is_category(all.paths[i])) s = grad__path_list_add(out, all.paths[i]);
  grad__path_list_free(&all);
  return s;
}

static void print_row(const char *name, const grad_eval_summary *m, double images_per_s) {
  printf("%-20s %9.2f %9.2f %9.2f %9.2f %9.1f\n", name, 100 * m->image_auroc,
         100 * m->pixel_auroc, 100 * m->aupro, 100 * m->image_f1_max, images_per_s);
}

static void write_json(FILE *f, const row *rows, size_t n, const grad_eval_summary *mean) {
  fprintf(f, "{\n  \"categories\": [\n");
  for (size_t i = 0; i <= n; i++) {
    const grad_eval_summary *m = i < n ? &rows[i].summary : mean;
    if (i == n) fprintf(f, "  ],\n  \"mean\": ");
    else fprintf(f, "    {\"name\": \"%s\", ", rows[i].name);
    if (i == n) fprintf(f, "{");
    fprintf(f, "\"image_auroc\": %.6f, \"pixel_auroc\": %.6f, \"aupro\": %.6f, "
               "\"image_f1_max\": %.6f, \"pixel_f1_max\": %.6f, \"images\": %d, "
               "\"seconds\": %.3f}%s\n",
            m->image_auroc, m->pixel_auroc, m->aupro, m->image_f1_max, m->pixel_f1_max,
            m->images, m->seconds, i + 1 < n ? "," : "");
  }
  fprintf(f, "}\n");
}

int cli_evaluate(const char *command, const grad_model *model, const char *root,
                 const char *maps_dir, const char *json_path) {
  grad__path_list categories = {0};
  grad_status s = find_categories(root, &categories);
  if (s == GRAD_OK && categories.count == 0)
    s = grad__fail(GRAD_E_MISSING, "%s: no MVTec-layout category (CLASS/test/...) found", root);
  if (s != GRAD_OK) {
    grad__path_list_free(&categories);
    return cli_fail(command, s, "cannot evaluate");
  }
  grad_context *ctx = NULL;
  s = grad_context_create(model, &ctx);
  row *rows = calloc(categories.count, sizeof *rows);
  if (s != GRAD_OK || !rows) {
    free(rows);
    grad__path_list_free(&categories);
    return cli_fail(command, s ? s : GRAD_E_NOMEM, "cannot evaluate");
  }
  int code = CLI_OK;
  grad_eval_summary mean = {.struct_size = sizeof mean};
  for (size_t i = 0; code == CLI_OK && i < categories.count; i++) {
    const char *category = categories.paths[i];
    const char *slash = strrchr(category, '/');
    snprintf(rows[i].name, sizeof rows[i].name, "%s", slash && slash[1] ? slash + 1 : category);
    char dir[4096];
    image_hook hook = {.model = model, .maps_dir = NULL, .write_status = GRAD_OK};
    if (maps_dir) {
      snprintf(dir, sizeof dir, "%s/%s", maps_dir, rows[i].name);
      hook.maps_dir = dir;
    }
    cli_progress_init(&hook.bar, rows[i].name, "images");
    rows[i].summary.struct_size = sizeof rows[i].summary;
    s = grad_model_evaluate(model, ctx, category, on_image, &hook, &rows[i].summary);
    cli_progress_finish(&hook.bar);
    if (hook.write_status != GRAD_OK) code = cli_fail(command, hook.write_status, "cannot write maps");
    else if (s != GRAD_OK) code = cli_fail(command, s, category);
  }
  if (code == CLI_OK) {
    printf("%-20s %9s %9s %9s %9s %9s\n", "category", "image-AUC", "pixel-AUC", "AUPRO",
           "F1-max", "images/s");
    size_t n = categories.count;
    for (size_t i = 0; i < n; i++) {
      const grad_eval_summary *m = &rows[i].summary;
      print_row(rows[i].name, m, m->seconds > 0 ? m->images / m->seconds : 0);
      mean.image_auroc += m->image_auroc / n;
      mean.pixel_auroc += m->pixel_auroc / n;
      mean.aupro += m->aupro / n;
      mean.image_f1_max += m->image_f1_max / n;
      mean.pixel_f1_max += m->pixel_f1_max / n;
      mean.images += m->images;
      mean.seconds += m->seconds;
    }
    print_row("mean", &mean, mean.seconds > 0 ? mean.images / mean.seconds : 0);
    if (json_path) {
      FILE *f = fopen(json_path, "w");
      if (!f) {
        fprintf(stderr, "grad %s: %s: %s\n", command, json_path, strerror(errno));
        code = CLI_FAILURE;
      } else {
        write_json(f, rows, n, &mean);
        if (fclose(f) != 0) code = CLI_FAILURE;
      }
    }
  }
  free(rows);
  grad_context_free(ctx);
  grad__path_list_free(&categories);
  return code;
}
