/* The images a command works on: paths, folders (recursive), list files. */
#ifndef GRAD_CLI_INPUTS_H
#define GRAD_CLI_INPUTS_H

#include <stddef.h>

typedef struct cli_paths {
  char **paths;
  size_t count, capacity;
} cli_paths;

/* Adds one argument: "-" reads paths from stdin (one per line), a folder
 * adds its PNG/JPEG files recursively in sorted order, anything else is
 * added as it is (a missing file fails later, when it is loaded). 0 on
 * failure with a message on stderr prefixed by "grad COMMAND". */
int cli_paths_add_argument(cli_paths *list, const char *arg, const char *command);

/* Adds the paths of a list file, one per line ("-": stdin). Empty lines
 * are skipped; a trailing '\r' is removed. */
int cli_paths_add_list_file(cli_paths *list, const char *file, const char *command);

/* Adds the training images of folder as grad_model_train finds them: an
 * MVTec-layout category's train/good, or the folder's own PNG/JPEG files,
 * sorted. 0 with a message when there are none. */
int cli_paths_add_training_folder(cli_paths *list, const char *folder, const char *command);

/* Adds a copy of path; 0 when out of memory. */
int cli_paths_add(cli_paths *list, const char *path);

void cli_paths_free(cli_paths *list);

/* 1 when the name ends with .png, .jpg or .jpeg (any case). */
int cli_is_image_name(const char *name);

#endif
