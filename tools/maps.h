/* Writing heatmap overlays and raw maps for `grad score` and `grad eval`. */
#ifndef GRAD_CLI_MAPS_H
#define GRAD_CLI_MAPS_H

#include <grad/grad.h>

/* Creates dir and its parents (mkdir -p); 0 on failure with errno set. */
int cli_make_dirs(const char *dir);

/* Writes DIR/STEM.png (overlay) and DIR/STEM_map.safetensors (the raw map,
 * tensor "map" of height x width, with the score in the metadata). */
grad_status cli_write_maps(const grad_model *model, const grad_image *image,
                           const grad_result *result, const char *dir, const char *stem);

/* The file name of path without folder and extension, into buf. */
void cli_stem(const char *path, char *buf, size_t size);

#endif

typedef struct cli_paths cli_paths;

/*
 * The --maps output names of the inputs (the overlay is DIR/NAME.png, the
 * raw map DIR/NAME_map.safetensors): each input's path relative to the
 * inputs' common folder, without its extension; inputs that would share a
 * name (a/x.png and a/x.jpg) keep their extension as "_png", "_jpg". NULL
 * for an input that does not exist (it fails when loaded). Returns 0 with a
 * message, writing nothing, when two inputs would still share a name or an
 * output would replace one of the inputs. Free with cli_map_names_free.
 */
int cli_map_names(const cli_paths *inputs, const char *dir, const char *command, char ***names);
void cli_map_names_free(char **names, size_t count);
