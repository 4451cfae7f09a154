/* What training records about itself in the model (grad_model_provenance). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "dataset.h"
#include "model_internal.h"
#include "train_internal.h"

/* JSON text needs UTF-8: other bytes of a path become '?'. */
static json_t *text_value(const char *s) {
  json_t *v = json_string(s);
  if (v) return v;
  char *copy = grad__strdup(s);
  if (!copy) return NULL;
  for (unsigned char *p = (unsigned char *)copy; *p; p++)
    if (*p >= 0x80) *p = '?';
  v = json_string(copy);
  grad__free(copy);
  return v;
}

static json_t *seed_value(uint64_t seed) {
  if (seed <= (uint64_t)INT64_MAX) return json_integer((json_int_t)seed);
  char text[32];
  snprintf(text, sizeof text, "%llu", (unsigned long long)seed);
  return json_string(text);
}

/* The folder part of a path without trailing slashes ("." for none). */
static char *parent_of(const char *path) {
  char *copy = grad__strdup(path);
  if (!copy) return NULL;
  size_t n = strlen(copy);
  while (n > 1 && copy[n - 1] == '/') copy[--n] = '\0';
  char *slash = strrchr(copy, '/');
  if (!slash) strcpy(copy, ".");
  else if (slash == copy) copy[1] = '\0';
  else *slash = '\0';
  return copy;
}

/* True when folder lies inside dir ("." holds every relative path). */
static bool inside(const char *dir, const char *folder) {
  if (!strcmp(dir, ".")) return folder[0] != '/';
  if (!strcmp(dir, "/")) return folder[0] == '/';
  size_t n = strlen(dir);
  return strncmp(folder, dir, n) == 0 && folder[n] == '/';
}

/* Folder names relative to the folders' common parent: /d/mvtec/bottle
 * and /d/mvtec/screw give ["bottle", "screw"]; absolute paths stay out of
 * the model file (without a common parent, each folder's own name). */
static json_t *relative_names(char *const *folders, size_t count) {
  json_t *list = json_array();
  if (!list || count == 0) return list;
  char *common = parent_of(folders[0]);
  for (size_t i = 1; common && i < count; i++) {
    while (common && !inside(common, folders[i]) && strcmp(common, "/") && strcmp(common, ".")) {
      char *up = parent_of(common);
      grad__free(common);
      common = up;
    }
  }
  if (!common) return json_decref(list), NULL;
  for (size_t i = 0; i < count; i++) {
    char *name = NULL;
    bool relative = strcmp(common, "/") && inside(common, folders[i]);
    if (relative) {
      name = grad__strdup(strcmp(common, ".") ? folders[i] + strlen(common) + 1 : folders[i]);
    } else {
      char *parent = parent_of(folders[i]);
      name = parent ? grad__strdup(folders[i] + (strcmp(parent, ".") ? strlen(parent) : 0)) : NULL;
      grad__free(parent);
    }
    if (!name) continue;
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/') name[--n] = '\0';
    const char *shown = name;
    while (shown[0] == '/' && shown[1]) shown++;
    json_array_append_new(list, text_value(shown));
    grad__free(name);
  }
  grad__free(common);
  return list;
}

/* The distinct folders of the files, in order of first appearance; an
 * MVTec category's CLASS/train/good counts as CLASS. */
static grad_status file_folders(const char *const *paths, size_t count, grad__path_list *out) {
  static const char category_part[] = "/train/good";
  for (size_t i = 0; i < count; i++) {
    char *parent = parent_of(paths[i]);
    if (!parent) return grad__fail(GRAD_E_NOMEM, "out of memory recording provenance");
    size_t n = strlen(parent), k = strlen(category_part);
    if (n > k && !strcmp(parent + n - k, category_part)) parent[n - k] = '\0';
    bool seen = false;
    for (size_t j = 0; j < out->count && !seen; j++) seen = !strcmp(out->paths[j], parent);
    grad_status s = seen ? GRAD_OK : grad__path_list_add(out, parent);
    grad__free(parent);
    if (s != GRAD_OK) return s;
  }
  return GRAD_OK;
}

static json_t *model_options_json(const grad_model *model, const grad__train_record *r) {
  const grad_model_options *o = r->model_options;
  const grad_backbone_options *b = o->backbone; /* resolved: never NULL here */
  const char *weights = b->weights_path ? strrchr(b->weights_path, '/') : NULL;
  weights = weights ? weights + 1 : b->weights_path;
  json_t *layers = json_array();
  unsigned mask = grad_backbone_layers(model->backbone);
  for (int k = 1; k <= 4; k++)
    if (mask & (1u << k)) json_array_append_new(layers, json_integer(k));
  const grad__store_config *c = grad__store_config_of(model->store);
  return json_pack("{s:s, s:o, s:o, s:o, s:i, s:i, s:i, s:s, s:i, s:i, s:i, s:f}",
                   "arch", grad_backbone_arch(model->backbone),
                   "weights", weights ? text_value(weights) : json_null(),
                   "random_seed", seed_value(b->random_seed), "layers", layers,
                   "input_size", grad_backbone_input_size(model->backbone),
                   "output_stride", grad_backbone_output_stride(model->backbone),
                   "channels", c->channels,
                   "decoder", c->decoder == GRAD__DECODER_CRAD ? "crad" : "basic",
                   "blocks", c->blocks, "local_res", c->local_res,
                   "global_res", c->global_res, "holdout_fraction", o->holdout_fraction);
}

static json_t *train_options_json(const grad__train_record *r) {
  const grad_train_options *o = r->train_options;
  return json_pack("{s:i, s:i, s:f, s:f, s:f, s:i, s:f, s:f, s:f, s:f, s:o, s:s, s:b}",
                   "epochs", o->epochs, "batch", o->batch, "lr_grid", o->lr_grid, "lr_net",
                   o->lr_net, "weight_decay", o->weight_decay, "lr_step_epochs",
                   o->lr_step_epochs, "lr_gamma", o->lr_gamma, "clip_norm", o->clip_norm,
                   "noise_prob", o->noise_prob, "noise_std", o->noise_std, "seed",
                   seed_value(o->seed), "precision", grad_precision_name(o->precision),
                   "resumed", r->resumed);
}

/* UTC now, or SOURCE_DATE_EPOCH (reproducible builds' convention). */
static void format_date(char *out, size_t size) {
  time_t t = time(NULL);
  const char *fixed = getenv("SOURCE_DATE_EPOCH");
  char *end = NULL;
  long long v = fixed ? strtoll(fixed, &end, 10) : 0;
  if (fixed && *fixed && end && *end == '\0' && v >= 0) t = (time_t)v;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static grad_status set_json(grad__provenance *p, const char *key, json_t *value) {
  char *text = value ? json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)
                     : NULL;
  json_decref(value);
  if (!text) return grad__fail(GRAD_E_NOMEM, "out of memory recording provenance (%s)", key);
  grad_status s = grad__provenance_set(p, key, text);
  free(text);
  return s;
}

static grad_status set_number(grad__provenance *p, const char *key, unsigned long long v) {
  char text[32];
  snprintf(text, sizeof text, "%llu", v);
  return grad__provenance_set(p, key, text);
}

grad_status grad__train_record_provenance(grad_model *model, const grad__train_record *r) {
  grad__provenance *p = &model->provenance;
  grad__path_list folders = {0};
  char date[32];
  format_date(date, sizeof date);
  grad_status s = grad__provenance_set(p, "library_version", grad_version_string());
  if (s == GRAD_OK) s = grad__provenance_set(p, "date", date);
  if (s == GRAD_OK) s = grad__provenance_set(p, "status", r->cancelled ? "cancelled" : "complete");
  if (s == GRAD_OK) s = grad__provenance_set(p, "source", r->source);
  if (s == GRAD_OK && r->folders) {
    for (size_t i = 0; s == GRAD_OK && i < r->folder_count; i++)
      s = grad__path_list_add(&folders, r->folders[i]);
  } else if (s == GRAD_OK && r->files) {
    s = file_folders(r->files, r->file_count, &folders);
  }
  if (s == GRAD_OK) s = set_json(p, "folders", relative_names(folders.paths, folders.count));
  if (s == GRAD_OK) s = set_number(p, "images", r->images);
  if (s == GRAD_OK) s = set_number(p, "holdout_images", r->holdout_images);
  if (s == GRAD_OK) s = set_number(p, "epochs", (unsigned long long)r->epochs_done);
  if (s == GRAD_OK) s = set_number(p, "seed", r->train_options->seed);
  if (s == GRAD_OK) s = set_json(p, "model_options", model_options_json(model, r));
  if (s == GRAD_OK) s = set_json(p, "train_options", train_options_json(r));
  grad__path_list_free(&folders);
  return s;
}
