/*
 * Pixel-level metrics: an accumulator of anomaly maps and ground-truth masks,
 * pixel AUROC, pixel F1-max and AUPRO (per-region overlap) exactly as the
 * MVTec AD evaluation code defines it: regions are the 8-connected
 * components of each mask (scipy.ndimage.label with a 3x3 structure of
 * ones), every distinct score is a threshold, the curve runs from (0, 0) to
 * (1, 1) and is integrated by trapezoids up to the FPR limit with linear
 * interpolation at the limit, then divided by the limit.
 */
#include <math.h>
#include <string.h>

#include <grad/eval.h>

#include "metrics.h"

struct grad_pixel_metrics {
  uint32_t *neg;          /* keys of normal pixels */
  size_t nneg, neg_cap;
  uint64_t *pos;          /* key << 32 | global region id, for anomalous pixels */
  size_t npos, pos_cap;
  uint32_t *region_size;  /* pixels per region, by global region id */
  size_t nregions, region_cap;
  uint32_t *pos_keys;     /* the sorted keys of pos, built on demand */
  bool sorted;
};

grad_status grad_pixel_metrics_create(grad_pixel_metrics **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_create: out is NULL");
  *out = grad__calloc(1, sizeof **out);
  if (!*out) return grad__fail(GRAD_E_NOMEM, "grad_pixel_metrics_create: out of memory");
  return GRAD_OK;
}

void grad_pixel_metrics_free(grad_pixel_metrics *pm) {
  if (!pm) return;
  grad__free(pm->neg);
  grad__free(pm->pos);
  grad__free(pm->region_size);
  grad__free(pm->pos_keys);
  grad__free(pm);
}

size_t grad_pixel_metrics_pixels(const grad_pixel_metrics *pm) {
  return pm ? pm->nneg + pm->npos : 0;
}

size_t grad_pixel_metrics_regions(const grad_pixel_metrics *pm) { return pm ? pm->nregions : 0; }

/* Grows *array to hold `need` elements (amortised doubling); state is left
 * unchanged on failure. */
static bool reserve(void **array, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t grown = *cap < 1024 ? 1024 : *cap;
  while (grown < need) grown = grown > SIZE_MAX / 2 ? need : grown * 2;
  size_t bytes;
  if (!grad__mul_size(grown, elem, &bytes)) return false;
  void *p = grad__realloc(*array, bytes);
  if (!p) return false;
  *array = p;
  *cap = grown;
  return true;
}

/*
 * Labels the 8-connected components of mask != 0 with 1..count in labels
 * (0 = background) by flood fill with an explicit stack (no recursion).
 */
static uint32_t label_components(const uint8_t *mask, int w, int h, uint32_t *labels,
                                 uint32_t *stack) {
  const size_t n = (size_t)w * h;
  uint32_t count = 0;
  memset(labels, 0, n * sizeof *labels);
  for (size_t seed = 0; seed < n; seed++) {
    if (!mask[seed] || labels[seed]) continue;
    size_t top = 0;
    labels[seed] = ++count;
    stack[top++] = (uint32_t)seed;
    while (top > 0) {
      const uint32_t p = stack[--top];
      const int y = (int)(p / (uint32_t)w), x = (int)(p % (uint32_t)w);
      for (int dy = -1; dy <= 1; dy++) {
        const int ny = y + dy;
        if (ny < 0 || ny >= h) continue;
        for (int dx = -1; dx <= 1; dx++) {
          const int nx = x + dx;
          if (nx < 0 || nx >= w) continue;
          const size_t q = (size_t)ny * w + nx;
          if (mask[q] && !labels[q]) {
            labels[q] = count;
            stack[top++] = (uint32_t)q;
          }
        }
      }
    }
  }
  return count;
}

grad_status grad_pixel_metrics_add(grad_pixel_metrics *pm, const float *map, const uint8_t *mask,
                                   int width, int height) {
  if (!pm || !map)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_add: %s is NULL",
                      !pm ? "the accumulator" : "map");
  if (width < 1 || height < 1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_add: map of %d x %d pixels",
                      width, height);
  const size_t n = (size_t)width * (size_t)height;
  if (n > (size_t)INT32_MAX)
    return grad__fail(GRAD_E_TOO_LARGE, "grad_pixel_metrics_add: map of %d x %d pixels",
                      width, height);
  size_t np = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(map[i]))
      return grad__fail(GRAD_E_NUMERIC, "grad_pixel_metrics_add: map value %zu (x %zu, y %zu) "
                        "is NaN", i, i % (size_t)width, i / (size_t)width);
    np += mask && mask[i];
  }
  uint32_t *labels = NULL, regions = 0;
  if (np) {
    labels = grad__malloc_array(n, 2 * sizeof *labels);
    if (!labels)
      return grad__fail(GRAD_E_NOMEM, "grad_pixel_metrics_add: out of memory labelling "
                        "a %d x %d mask", width, height);
    regions = label_components(mask, width, height, labels, labels + n);
    if (pm->nregions + regions > UINT32_MAX) {
      grad__free(labels);
      return grad__fail(GRAD_E_TOO_LARGE, "grad_pixel_metrics_add: more than 2^32 regions");
    }
  }
  if (!reserve((void **)&pm->neg, &pm->neg_cap, pm->nneg + (n - np), sizeof *pm->neg) ||
      !reserve((void **)&pm->pos, &pm->pos_cap, pm->npos + np, sizeof *pm->pos) ||
      !reserve((void **)&pm->region_size, &pm->region_cap, pm->nregions + regions,
               sizeof *pm->region_size)) {
    grad__free(labels);
    return grad__fail(GRAD_E_NOMEM, "grad_pixel_metrics_add: out of memory storing %zu pixels",
                      pm->nneg + pm->npos + n);
  }
  const size_t first_region = pm->nregions;
  for (uint32_t r = 0; r < regions; r++) pm->region_size[first_region + r] = 0;
  for (size_t i = 0; i < n; i++) {
    const uint32_t key = grad__float_key(map[i]);
    if (labels && labels[i]) {
      const size_t region = first_region + labels[i] - 1;
      pm->region_size[region]++;
      pm->pos[pm->npos++] = (uint64_t)key << 32 | (uint64_t)region;
    } else {
      pm->neg[pm->nneg++] = key;
    }
  }
  pm->nregions += regions;
  pm->sorted = false;
  grad__free(labels);
  return GRAD_OK;
}

static grad_status ensure_sorted(grad_pixel_metrics *pm, const char *fn) {
  if (pm->sorted) return GRAD_OK;
  grad__free(pm->pos_keys);
  pm->pos_keys = grad__malloc_array(pm->npos ? pm->npos : 1, sizeof *pm->pos_keys);
  if (!pm->pos_keys)
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory sorting %zu anomalous pixels", fn,
                      pm->npos);
  grad__sort_u32(pm->neg, pm->nneg);
  grad__sort_u64_high(pm->pos, pm->npos);
  for (size_t i = 0; i < pm->npos; i++) pm->pos_keys[i] = (uint32_t)(pm->pos[i] >> 32);
  pm->sorted = true;
  return GRAD_OK;
}

grad_status grad_pixel_metrics_auroc(grad_pixel_metrics *pm, double *auroc) {
  if (!pm || !auroc)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_auroc: %s is NULL",
                      !pm ? "the accumulator" : "auroc");
  if (pm->npos == 0 || pm->nneg == 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_auroc: AUROC needs both normal "
                      "and anomalous pixels; got %zu normal, %zu anomalous", pm->nneg, pm->npos);
  grad_status st = ensure_sorted(pm, "grad_pixel_metrics_auroc");
  if (st != GRAD_OK) return st;
  *auroc = grad__auroc_sorted(pm->pos_keys, pm->npos, pm->neg, pm->nneg);
  return GRAD_OK;
}

grad_status grad_pixel_metrics_f1_max(grad_pixel_metrics *pm, double *f1, float *threshold) {
  if (!pm || !f1)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_f1_max: %s is NULL",
                      !pm ? "the accumulator" : "f1");
  if (pm->npos == 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_f1_max: F1 needs anomalous "
                      "pixels; all %zu are normal", pm->nneg);
  grad_status st = ensure_sorted(pm, "grad_pixel_metrics_f1_max");
  if (st != GRAD_OK) return st;
  *f1 = grad__f1_max_sorted(pm->pos_keys, pm->npos, pm->neg, pm->nneg, threshold);
  return GRAD_OK;
}

grad_status grad_pixel_metrics_aupro(grad_pixel_metrics *pm, double fpr_limit, double *aupro) {
  if (!pm || !aupro)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_aupro: %s is NULL",
                      !pm ? "the accumulator" : "aupro");
  if (!(fpr_limit > 0.0 && fpr_limit <= 1.0))
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_aupro: fpr_limit %g is not in "
                      "(0, 1]", fpr_limit);
  if (pm->nregions == 0 || pm->nneg == 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_pixel_metrics_aupro: AUPRO needs normal pixels "
                      "and defect regions; got %zu normal pixels, %zu regions", pm->nneg,
                      pm->nregions);
  grad_status st = ensure_sorted(pm, "grad_pixel_metrics_aupro");
  if (st != GRAD_OK) return st;
  /* Lower the threshold through the distinct scores from the top. Each
   * anomalous pixel adds 1 / |its region| to the summed overlap and each
   * normal one 1 to the false positives; ties enter as one curve point. */
  const double regions = (double)pm->nregions, normals = (double)pm->nneg;
  size_t i = pm->npos, j = pm->nneg;
  uint64_t fp = 0;
  double overlap = 0.0, x0 = 0.0, y0 = 0.0, area = 0.0;
  while (i > 0 || j > 0) {
    uint32_t v;
    if (i == 0 || (j > 0 && pm->neg[j - 1] > pm->pos_keys[i - 1]))
      v = pm->neg[j - 1];
    else
      v = pm->pos_keys[i - 1];
    for (; i > 0 && pm->pos_keys[i - 1] == v; i--)
      overlap += 1.0 / pm->region_size[(uint32_t)pm->pos[i - 1]];
    for (; j > 0 && pm->neg[j - 1] == v; j--) fp++;
    const double x = (double)fp / normals, y = fmin(overlap / regions, 1.0);
    if (x >= fpr_limit) {
      /* The segment reaching the limit: interpolate PRO linearly there. */
      const double y_limit = x > x0 ? y0 + (y - y0) * (fpr_limit - x0) / (x - x0) : y;
      area += 0.5 * (y0 + y_limit) * (fpr_limit - x0);
      break;
    }
    area += 0.5 * (y0 + y) * (x - x0);
    x0 = x;
    y0 = y;
  }
  *aupro = area / fpr_limit;
  return GRAD_OK;
}
