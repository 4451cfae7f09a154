/* Gathering input paths for `grad score` (and the training checks). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "inputs.h"

int cli_paths_add(cli_paths *list, const char *path) {
  if (list->count == list->capacity) {
    size_t capacity = list->capacity ? 2 * list->capacity : 64;
    char **grown = realloc(list->paths, capacity * sizeof *grown);
    if (!grown) return 0;
    list->paths = grown;
    list->capacity = capacity;
  }
  if (!(list->paths[list->count] = strdup(path))) return 0;
  list->count++;
  return 1;
}

void cli_paths_free(cli_paths *list) {
  for (size_t i = 0; i < list->count; i++) free(list->paths[i]);
  free(list->paths);
  memset(list, 0, sizeof *list);
}

int cli_is_image_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Image files in dir (and under it when recursive), sorted by name at each
 * level; symbolic links to folders are not followed (no loops), links to
 * files are. */
static int add_folder(cli_paths *list, const char *dir, int recursive, const char *command) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "grad %s: %s: %s\n", command, dir, strerror(errno));
    return 0;
  }
  cli_paths names = {0};
  int ok = 1;
  struct dirent *e;
  while (ok && (e = readdir(d)))
    if (e->d_name[0] != '.') ok = cli_paths_add(&names, e->d_name);
  closedir(d);
  if (!ok) fprintf(stderr, "grad %s: out of memory listing %s\n", command, dir);
  qsort(names.paths, names.count, sizeof *names.paths, compare_names);
  size_t dir_len = strlen(dir);
  while (dir_len > 1 && dir[dir_len - 1] == '/') dir_len--;
  for (size_t i = 0; ok && i < names.count; i++) {
    size_t n = dir_len + strlen(names.paths[i]) + 2;
    char *path = malloc(n);
    if (!path) {
      ok = 0;
      break;
    }
    snprintf(path, n, "%.*s/%s", (int)dir_len, dir, names.paths[i]);
    struct stat link, target;
    if (lstat(path, &link) == 0 && S_ISDIR(link.st_mode)) {
      if (recursive) ok = add_folder(list, path, recursive, command);
    } else if (cli_is_image_name(names.paths[i]) && stat(path, &target) == 0 &&
             S_ISREG(target.st_mode))
      ok = cli_paths_add(list, path);
    free(path);
  }
  cli_paths_free(&names);
  return ok;
}

static int add_lines(cli_paths *list, FILE *f, const char *name, const char *command) {
  char *line = NULL;
  size_t size = 0;
  ssize_t n;
  int ok = 1;
  while (ok && (n = getline(&line, &size, f)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n > 0) ok = cli_paths_add(list, line);
  }
  if (ok && ferror(f)) {
    fprintf(stderr, "grad %s: cannot read %s: %s\n", command, name, strerror(errno));
    ok = 0;
  }
  free(line);
  return ok;
}

int cli_paths_add_list_file(cli_paths *list, const char *file, const char *command) {
  if (!strcmp(file, "-")) return add_lines(list, stdin, "standard input", command);
  struct stat st;
  if (stat(file, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    fprintf(stderr, "grad %s: %s: not a regular file\n", command, file);
    return 0;
  }
  FILE *f = fopen(file, "r");
  if (!f) {
    fprintf(stderr, "grad %s: %s: %s\n", command, file, strerror(errno));
    return 0;
  }
  int ok = add_lines(list, f, file, command);
  fclose(f);
  return ok;
}

int cli_paths_add_argument(cli_paths *list, const char *arg, const char *command) {
  if (!strcmp(arg, "-")) return cli_paths_add_list_file(list, "-", command);
  struct stat st;
  if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
    size_t before = list->count;
    if (!add_folder(list, arg, 1, command)) return 0;
    if (list->count == before)
      fprintf(stderr, "grad %s: %s: no PNG or JPEG images in this folder\n", command, arg);
    return 1;
  }
  if (!cli_paths_add(list, arg)) {
    fprintf(stderr, "grad %s: out of memory\n", command);
    return 0;
  }
  return 1;
}

static int is_folder(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cli_paths_add_training_folder(cli_paths *list, const char *folder, const char *command) {
  /* The rule of grad_model_train (train.h): a category's train/good, or
   * the folder itself. */
  char good[4096], test[4096];
  snprintf(good, sizeof good, "%s/train/good", folder);
  snprintf(test, sizeof test, "%s/test", folder);
  const char *dir = is_folder(good) || is_folder(test) ? good : folder;
  size_t before = list->count;
  if (!add_folder(list, dir, 0, command)) return 0;
  if (list->count == before) {
    fprintf(stderr, "grad %s: %s: no PNG or JPEG images found\n", command, dir);
    return 0;
  }
  return 1;
}
