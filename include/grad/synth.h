/* libgrad: a synthetic MVTec-layout data set with exact defect masks, for
 * demos and tests. Experimental (see <grad/common.h>): declared only when
 * GRAD_EXPERIMENTAL is defined. */
#ifndef GRAD_SYNTH_H
#define GRAD_SYNTH_H

#include <grad/common.h>

#ifdef GRAD_EXPERIMENTAL

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Synthetic data set --------------------------------------------------
 * A small procedurally generated data set in the MVTec AD layout, for
 * demos, tests and CI without downloads:
 *   DIR/CLASS/train/good/NNN.png, DIR/CLASS/test/good/NNN.png,
 *   DIR/CLASS/test/DEFECT/NNN.png, DIR/CLASS/ground_truth/DEFECT/NNN_mask.png
 * Masks are 0/255 gray PNGs marking exactly the pixels the defect changed.
 * The same options give byte-identical files on every platform.
 */
/* Versioned as grad_backbone_options: fill with
 * grad_synth_options_init(&opts, sizeof opts), then change fields. */
typedef struct grad_synth_options {
  size_t struct_size;     /* the caller's sizeof(grad_synth_options), set by _init */
  const char *out_dir;    /* created when missing (with its parents) */
  uint64_t seed;          /* default 1 */
  int size;               /* square image side in pixels, 32..4096; default 128 */
  int train_count;        /* train/good images per class; default 40 */
  int test_count;         /* test images per class; default 20: a quarter
                             (rounded up) good, the rest spread over the
                             class's defect types in turn */
  const char *category;   /* one class by name, or NULL for all (default) */
} grad_synth_options;

/* Fills struct_size bytes at opts with the defaults; NULL is a no-op. */
GRAD_API void grad_synth_options_init(grad_synth_options *opts, size_t struct_size);

/* Writes the data set (each file atomically). */
GRAD_API GRAD_NODISCARD grad_status grad_synth_write(const grad_synth_options *opts);

/* The class names, index 0.. ; NULL past the last. */
GRAD_API const char *grad_synth_category_name(int index);

/* The defect types of a class, index 0.. ; NULL past the last or for an
 * unknown class. */
GRAD_API const char *grad_synth_defect_name(const char *category, int index);

#ifdef __cplusplus
}
#endif

#endif /* GRAD_EXPERIMENTAL */

#endif /* GRAD_SYNTH_H */
