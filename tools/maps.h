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
