/* The per-category evaluation table shared by `grad eval` and `grad demo`. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_report.h"
#include "maps.h"
#include "output.h"
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

/* A percentage, or a dash when the metric is absent (no masks). */
static void print_metric(double value) {
  if (isnan(value)) printf(" %9s", "-");
  else printf(" %9.2f", 100 * value);
}

static void print_row(const char *name, const grad_eval_summary *m, double images_per_s) {
  char shown[256] = ""; /* one line whatever the folder's name holds */
  FILE *f = fmemopen(shown, sizeof shown - 1, "w");
  if (f) {
    cli_put_escaped(f, name);
    fclose(f);
  }
  printf("%-20s", shown);
  print_metric(m->image_auroc);
  print_metric(m->pixel_auroc);
  print_metric(m->aupro);
  print_metric(m->image_f1_max);
  printf(" %9.1f\n", images_per_s);
}

static json_t *summary_json(const char *name, const grad_eval_summary *m) {
  json_t *o = json_object();
  if (name) json_object_set_new(o, "name", cli_json_string(name));
  json_object_set_new(o, "image_auroc", cli_json_number(m->image_auroc));
  json_object_set_new(o, "pixel_auroc", cli_json_number(m->pixel_auroc));
  json_object_set_new(o, "aupro", cli_json_number(m->aupro));
  json_object_set_new(o, "image_f1_max", cli_json_number(m->image_f1_max));
  json_object_set_new(o, "pixel_f1_max", cli_json_number(m->pixel_f1_max));
  json_object_set_new(o, "images", json_integer(m->images));
  json_object_set_new(o, "seconds", cli_json_number(m->seconds));
  return o;
}

/* The report as JSON (absent metrics are null), written atomically. */
static int write_json(const char *command, const char *path, const row *rows, size_t n,
                      const grad_eval_summary *mean) {
  json_t *report = json_object(), *categories = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(categories, summary_json(rows[i].name, &rows[i].summary));
  json_object_set_new(report, "categories", categories);
  json_object_set_new(report, "mean", summary_json(NULL, mean));
  char *text = json_dumps(report, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
  json_decref(report);
  if (!text) {
    fprintf(stderr, "grad %s: %s: out of memory\n", command, path);
    return 0;
  }
  size_t size = strlen(text);
  text[size] = '\n'; /* json_dumps leaves room for the terminator */
  int ok = cli_write_file(command, path, text, size + 1);
  free(text);
  return ok;
}

/* Mean of one metric over the categories that have it; NaN when none does. */
static double mean_of(const row *rows, size_t n, size_t offset) {
  double sum = 0;
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    double v = *(const double *)((const char *)&rows[i].summary + offset);
    if (!isnan(v)) sum += v, count++;
  }
  return count ? sum / count : NAN;
}

int cli_evaluate(const char *command, const grad_model *model, const char *root,
                 const char *maps_dir, const char *json_path) {
  char **categories = NULL;
  size_t count = 0;
  grad_status s = grad_categories_find(root, &categories, &count);
  if (s != GRAD_OK) return cli_fail(command, s, "cannot evaluate");
  grad_context *ctx = NULL;
  s = grad_context_create(model, &ctx);
  row *rows = calloc(count, sizeof *rows);
  if (s != GRAD_OK || !rows) {
    free(rows);
    grad_categories_free(categories);
    return cli_fail(command, s ? s : GRAD_E_NOMEM, "cannot evaluate");
  }
  int code = CLI_OK;
  grad_eval_summary mean = {.struct_size = sizeof mean};
  for (size_t i = 0; code == CLI_OK && i < count; i++) {
    const char *category = categories[i];
    const char *slash = strrchr(category, '/');
    snprintf(rows[i].name, sizeof rows[i].name, "%s", slash && slash[1] ? slash + 1 : category);
    char dir[4096];
    image_hook hook = {.model = model, .maps_dir = NULL, .write_status = GRAD_OK};
    if (maps_dir) {
      snprintf(dir, sizeof dir, "%s/%s", maps_dir, rows[i].name);
      hook.maps_dir = dir;
    }
    cli_progress_init(&hook.bar, rows[i].name, "images");
    grad_eval_summary_init(&rows[i].summary, sizeof rows[i].summary);
    s = grad_model_evaluate(model, ctx, category, on_image, &hook, &rows[i].summary);
    cli_progress_finish(&hook.bar);
    if (hook.write_status != GRAD_OK) code = cli_fail(command, hook.write_status, "cannot write maps");
    else if (s != GRAD_OK) code = cli_fail(command, s, category);
  }
  if (code == CLI_OK) {
    printf("%-20s %9s %9s %9s %9s %9s\n", "category", "image-AUC", "pixel-AUC", "AUPRO",
           "F1-max", "images/s");
    size_t n = count;
    for (size_t i = 0; i < n; i++) {
      const grad_eval_summary *m = &rows[i].summary;
      print_row(rows[i].name, m, m->seconds > 0 ? m->images / m->seconds : 0);
      mean.images += m->images;
      mean.seconds += m->seconds;
    }
    mean.image_auroc = mean_of(rows, n, offsetof(grad_eval_summary, image_auroc));
    mean.pixel_auroc = mean_of(rows, n, offsetof(grad_eval_summary, pixel_auroc));
    mean.aupro = mean_of(rows, n, offsetof(grad_eval_summary, aupro));
    mean.image_f1_max = mean_of(rows, n, offsetof(grad_eval_summary, image_f1_max));
    mean.pixel_f1_max = mean_of(rows, n, offsetof(grad_eval_summary, pixel_f1_max));
    print_row("mean", &mean, mean.seconds > 0 ? mean.images / mean.seconds : 0);
    size_t unmasked = 0;
    for (size_t i = 0; i < n; i++) unmasked += isnan(rows[i].summary.pixel_auroc) != 0;
    if (unmasked) {
      fprintf(stderr, "grad %s: pixel metrics absent (-) for ", command);
      for (size_t i = 0, k = 0; i < n; i++)
        if (isnan(rows[i].summary.pixel_auroc)) {
          fprintf(stderr, "%s", k++ ? ", " : "");
          cli_put_escaped(stderr, rows[i].name);
        }
      fprintf(stderr, ": no ground_truth folder (image labels only)%s\n",
              unmasked < n ? "; the mean row's pixel figures average the others" : "");
    }
    if (json_path && !write_json(command, json_path, rows, n, &mean)) code = CLI_FAILURE;
  }
  free(rows);
  grad_context_free(ctx);
  grad_categories_free(categories);
  return code;
}
