/*
 * The synthetic data set (grad_synth_write): three classes rendered from a
 * seed, each with its own defect types and exact masks.
 *   weave   gray regular texture: a basket weave with jittered period,
 *           phase and angle; defects scratch, spot, crack
 *   marble  RGB irregular texture: veined smooth noise; defects crack,
 *           spot, color
 *   washer  RGB object on a background: a ring with a tab at a random
 *           angle, jittered position and size; defects missing, extra, color
 * A defect is a binary shape; inside it the defective colour replaces the
 * clean one and is nudged where rounding would leave a pixel unchanged, so
 * the mask is exactly the set of changed pixels.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <grad/synth.h>
#include <grad/image.h>

#include "synth_internal.h"

typedef enum { WEAVE, MARBLE, WASHER } category_id;
typedef enum { SCRATCH, SPOT, CRACK, COLOR, MISSING, EXTRA } defect_id;

static const struct {
  const char *name;
  int channels;
  int ndefects;
  defect_id defects[GRAD__SYNTH_MAX_DEFECTS];
} categories[GRAD__SYNTH_CATEGORIES] = {
  {"weave", 1, 3, {SCRATCH, SPOT, CRACK}},
  {"marble", 3, 3, {CRACK, SPOT, COLOR}},
  {"washer", 3, 3, {MISSING, EXTRA, COLOR}},
};
static const char *defect_names[] = {"scratch", "spot", "crack", "color", "missing", "extra"};

int grad__synth_channels(int category) { return categories[category].channels; }
int grad__synth_defect_count(int category) { return categories[category].ndefects; }

const char *grad_synth_category_name(int index) {
  return index >= 0 && index < GRAD__SYNTH_CATEGORIES ? categories[index].name : NULL;
}

static int category_index(const char *name) {
  for (int c = 0; name && c < GRAD__SYNTH_CATEGORIES; c++)
    if (!strcmp(name, categories[c].name)) return c;
  return -1;
}

const char *grad_synth_defect_name(const char *category, int index) {
  const int c = category_index(category);
  if (c < 0 || index < 0 || index >= categories[c].ndefects) return NULL;
  return defect_names[categories[c].defects[index]];
}

static uint64_t mix64(uint64_t z) { /* splitmix64's finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t grad__synth_image_seed(uint64_t seed, int category, int kind, int index) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ull);
  h = mix64(h ^ (uint64_t)(category + 1));
  h = mix64(h ^ (uint64_t)(int64_t)(kind + 16) << 20);
  return mix64(h ^ (uint64_t)(uint32_t)index);
}

/* ---- Rendering ---------------------------------------------------------- */

/* The float layers of one rendering (0..255 per channel). */
typedef struct scene {
  int size, channels;
  float scale;           /* size / 128: line widths follow the image size */
  float *color;          /* the clean image */
  float *bg, *alpha;     /* washer only: background and part coverage */
  float cx, cy, ro, ri;  /* washer geometry */
  float lx, ly;          /* washer light direction */
  float *noise;          /* size * size scratch */
} scene;

static inline float unif(grad__rng *rng, float lo, float hi) {
  return lo + (hi - lo) * (float)grad__rng_uniform(rng);
}
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline float frac(float v) { return v - floorf(v); }

static grad_status render_weave(grad__rng *rng, scene *sc) {
  const int s = sc->size;
  const float period = (float)s / 10.0f * unif(rng, 0.95f, 1.05f);
  const float e = unif(rng, -0.05f, 0.05f), norm = sqrtf(1.0f + e * e);
  const float c = 1.0f / norm, sn = e / norm;
  const float pu = unif(rng, 0, period), pv = unif(rng, 0, period);
  grad_status st = grad__noise_fbm(rng, s, (float)s / 4.0f, 2, sc->noise);
  if (st != GRAD_OK) return st;
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      const float u = (c * x + sn * y + pu) / period, v = (-sn * x + c * y + pv) / period;
      const int parity = ((int)floorf(u) + (int)floorf(v)) & 1;
      const float fu = 2.0f * frac(u) - 1.0f, fv = 2.0f * frac(v) - 1.0f;
      /* Each cell shows the thread running one way: a rounded bump across it. */
      const float thread = parity ? 1.0f - fu * fu : 1.0f - fv * fv;
      const size_t i = (size_t)y * s + x;
      sc->color[i] = 40.0f + 170.0f * thread * (0.92f + 0.16f * sc->noise[i]) +
                     unif(rng, -3.0f, 3.0f);
    }
  return GRAD_OK;
}

static grad_status render_marble(grad__rng *rng, scene *sc) {
  const int s = sc->size;
  float base[3] = {214, 200, 182};
  const float vein[3] = {110, 95, 85};
  for (int k = 0; k < 3; k++) base[k] += unif(rng, -8, 8);
  float dx, dy;
  grad__random_direction(rng, &dx, &dy);
  const float freq = unif(rng, 2.0f, 4.0f);
  float *mottle = sc->noise; /* reused once the veins are computed */
  grad_status st = grad__noise_fbm(rng, s, (float)s / 3.0f, 4, sc->noise);
  if (st != GRAD_OK) return st;
  /* Vein strength per pixel into the red plane first, then colours. */
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      const size_t i = (size_t)y * s + x;
      const float z = freq * (x * dx + y * dy) / s + 2.5f * sc->noise[i];
      const float w = fabsf(2.0f * frac(z) - 1.0f); /* 1 at the veins' cores */
      const float t = clampf((w - 0.85f) / 0.15f, 0.0f, 1.0f);
      sc->color[i] = t * t;
    }
  st = grad__noise_fbm(rng, s, (float)s / 8.0f, 2, mottle);
  if (st != GRAD_OK) return st;
  const size_t plane = (size_t)s * s;
  for (size_t i = 0; i < plane; i++) {
    const float v = 0.85f * sc->color[i], shade = 0.9f + 0.2f * mottle[i];
    const float grain = unif(rng, -3.0f, 3.0f);
    for (int k = 0; k < 3; k++) /* v was read before plane 0 is overwritten */
      sc->color[k * plane + i] = (1.0f - v) * base[k] * shade + v * vein[k] + grain;
  }
  return GRAD_OK;
}

/* The washer's metal colour at (x, y): lit from the top left, turned rings. */
static float metal(const scene *sc, int k, float x, float y) {
  static const float tint[3] = {168, 170, 174};
  const float dx = x - sc->cx, dy = y - sc->cy, r = sqrtf(dx * dx + dy * dy);
  const float shade = 0.8f + 0.18f * (dx * sc->lx + dy * sc->ly) / sc->ro +
                      0.05f * fabsf(2.0f * frac(r / (2.5f * sc->scale)) - 1.0f);
  return tint[k] * shade;
}

static grad_status render_washer(grad__rng *rng, scene *sc) {
  const int s = sc->size;
  const size_t plane = (size_t)s * s;
  const float bgc[3] = {38, 44, 56};
  sc->cx = s * 0.5f + unif(rng, -0.025f, 0.025f) * s;
  sc->cy = s * 0.5f + unif(rng, -0.025f, 0.025f) * s;
  sc->ro = 0.32f * s * unif(rng, 0.98f, 1.02f);
  sc->ri = 0.13f * s * unif(rng, 0.97f, 1.03f);
  sc->lx = -0.70710678f;
  sc->ly = -0.70710678f;
  float tc, ts;
  grad__random_direction(rng, &tc, &ts);
  const float tab_in = sc->ro - 0.25f * (sc->ro - sc->ri), tab_out = sc->ro + 0.1f * s;
  const float tab_half = 0.05f * s;
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      const size_t i = (size_t)y * s + x;
      const float dx = x - sc->cx, dy = y - sc->cy, r = sqrtf(dx * dx + dy * dy);
      const float along = dx * tc + dy * ts, across = fabsf(-dx * ts + dy * tc);
      /* Signed distances (positive inside) of the ring and of the tab; their
       * union's coverage, antialiased over one pixel. */
      const float ring = fminf(sc->ro - r, r - sc->ri);
      const float tab = fminf(fminf(tab_out - along, along - tab_in), tab_half - across);
      const float a = clampf(fmaxf(ring, tab) + 0.5f, 0.0f, 1.0f);
      const float light = 0.85f + 0.3f * (float)(x + y) / (2.0f * s);
      const float grain = unif(rng, -4.0f, 4.0f);
      sc->alpha[i] = a;
      for (int k = 0; k < 3; k++) {
        const float b = bgc[k] * light + grain;
        sc->bg[k * plane + i] = b;
        sc->color[k * plane + i] = a * (metal(sc, k, (float)x, (float)y) + grain) + (1 - a) * b;
      }
    }
  return GRAD_OK;
}

/* ---- Defects ------------------------------------------------------------ */

enum { MAX_POINTS = 64 };

/* A slightly bent line (quadratic Bezier as 16 segments) through the centre. */
static int scratch_points(grad__rng *rng, const scene *sc, float cx, float cy, float *xy) {
  float dx, dy;
  grad__random_direction(rng, &dx, &dy);
  const float len = unif(rng, 0.25f, 0.5f) * sc->size, bend = unif(rng, -0.2f, 0.2f) * len;
  const float ax = cx - 0.5f * len * dx, ay = cy - 0.5f * len * dy;
  const float bx = cx + 0.5f * len * dx, by = cy + 0.5f * len * dy;
  const float px = cx - bend * dy, py = cy + bend * dx;
  for (int i = 0; i <= 16; i++) {
    const float t = i / 16.0f, u = 1.0f - t;
    xy[2 * i] = u * u * ax + 2 * u * t * px + t * t * bx;
    xy[2 * i + 1] = u * u * ay + 2 * u * t * py + t * t * by;
  }
  return 17;
}

/* A random walk of short steps whose direction wanders. */
static int walk_points(grad__rng *rng, const scene *sc, float x, float y, float dx, float dy,
                       int steps, float *xy) {
  const float step = 0.018f * sc->size;
  xy[0] = x;
  xy[1] = y;
  for (int i = 1; i <= steps; i++) {
    dx += unif(rng, -0.5f, 0.5f);
    dy += unif(rng, -0.5f, 0.5f);
    const float n = sqrtf(dx * dx + dy * dy);
    if (n > 1e-6f) dx /= n, dy /= n;
    x += step * dx;
    y += step * dy;
    xy[2 * i] = x;
    xy[2 * i + 1] = y;
  }
  return steps + 1;
}

/* Rasterises the defect's shape into mask. */
static void defect_shape(grad__rng *rng, const scene *sc, defect_id d, uint8_t *mask) {
  const int s = sc->size;
  float xy[2 * MAX_POINTS];
  float cx = unif(rng, 0.2f, 0.8f) * s, cy = unif(rng, 0.2f, 0.8f) * s;
  float ux, uy;
  switch (d) {
    case SCRATCH: {
      const int n = scratch_points(rng, sc, cx, cy, xy);
      grad__shape_polyline(mask, s, xy, n, unif(rng, 0.6f, 1.1f) * fmaxf(1.0f, sc->scale));
      break;
    }
    case CRACK: {
      grad__random_direction(rng, &ux, &uy);
      const int n = walk_points(rng, sc, cx, cy, ux, uy, 20 + (int)grad__rng_below(rng, 16), xy);
      const float r = unif(rng, 0.6f, 1.0f) * fmaxf(1.0f, sc->scale);
      grad__shape_polyline(mask, s, xy, n, r);
      /* One branch leaving a middle vertex sideways. */
      const int at = n / 2;
      const int m = walk_points(rng, sc, xy[2 * at], xy[2 * at + 1], -uy, ux,
                                8 + (int)grad__rng_below(rng, 7), xy);
      grad__shape_polyline(mask, s, xy, m, r * 0.8f);
      break;
    }
    case SPOT: {
      const int discs = 3 + (int)grad__rng_below(rng, 3);
      for (int i = 0; i < discs; i++) {
        const float r = unif(rng, 0.025f, 0.06f) * s;
        grad__shape_disc(mask, s, cx + unif(rng, -1, 1) * r, cy + unif(rng, -1, 1) * r, r);
      }
      break;
    }
    case COLOR: {
      if (sc->alpha) { /* on the washer: centred on the ring */
        grad__random_direction(rng, &ux, &uy);
        cx = sc->cx + 0.5f * (sc->ro + sc->ri) * ux;
        cy = sc->cy + 0.5f * (sc->ro + sc->ri) * uy;
      }
      grad__random_direction(rng, &ux, &uy);
      grad__shape_ellipse(mask, s, cx, cy, ux, uy, unif(rng, 0.07f, 0.12f) * s,
                          unif(rng, 0.04f, 0.07f) * s);
      break;
    }
    case MISSING: /* a bite out of the rim */
    case EXTRA: { /* a lump on the rim */
      grad__random_direction(rng, &ux, &uy);
      const float r = (d == MISSING ? unif(rng, 0.07f, 0.1f) : unif(rng, 0.05f, 0.08f)) * s;
      const float at = d == MISSING ? sc->ro : sc->ro + 0.5f * r;
      cx = sc->cx + at * ux;
      cy = sc->cy + at * uy;
      grad__shape_disc(mask, s, cx, cy, r);
      if (d == EXTRA) grad__shape_disc(mask, s, cx + 0.6f * r * uy, cy - 0.6f * r * ux, 0.7f * r);
      break;
    }
  }
  /* Only the washer's own pixels can lose material or change colour. */
  if (sc->alpha && (d == MISSING || d == COLOR))
    for (size_t i = 0; i < (size_t)s * s; i++)
      if (d == MISSING ? sc->alpha[i] <= 0.0f : sc->alpha[i] < 0.5f) mask[i] = 0;
}

/* The defective colour of channel k at pixel i, from the clean colour c. */
static float defect_color(const scene *sc, defect_id d, int k, size_t i, float c) {
  static const float stain[3] = {60, 40, 20}, tint[3] = {-40, -10, 30};
  const int s = sc->size;
  switch (d) {
    case SCRATCH: return 255.0f - (255.0f - c) * 0.25f;
    case CRACK: return c * 0.2f + 8.0f;
    case SPOT: return sc->channels == 1 ? c * 0.45f : c * 0.55f + stain[k] * 0.45f;
    case COLOR:
      if (sc->alpha) return c * (k == 0 ? 1.0f : (k == 1 ? 0.78f : 0.55f)) + (k == 0 ? 25.0f : 0);
      return c + tint[k];
    case MISSING: return sc->bg[(size_t)k * s * s + i];
    case EXTRA:
      return 1.12f * metal(sc, k, (float)(i % (size_t)s), (float)(i / (size_t)s));
  }
  return c;
}

static inline uint8_t to_byte(float v) { return (uint8_t)(clampf(v, 0.0f, 255.0f) + 0.5f); }

static grad_status render_clean(int category, grad__rng *rng, scene *sc) {
  switch ((category_id)category) {
    case WEAVE: return render_weave(rng, sc);
    case MARBLE: return render_marble(rng, sc);
    case WASHER: return render_washer(rng, sc);
  }
  return grad__fail(GRAD_E_INTERNAL, "synthetic data: class %d", category);
}

grad_status grad__synth_render(int category, int kind, uint64_t image_seed, int size,
                               uint8_t *pixels, uint8_t *clean, uint8_t *mask) {
  const int ch = categories[category].channels;
  const size_t plane = (size_t)size * size, n = plane * ch;
  const bool washer = category == WASHER;
  float *block = grad__malloc_array(n * (washer ? 2 : 1) + plane * (washer ? 2 : 1), sizeof(float));
  if (!block) return grad__fail(GRAD_E_NOMEM, "synthetic data: out of memory for a %d x %d image",
                                size, size);
  scene sc = {.size = size, .channels = ch, .scale = size / 128.0f, .color = block,
              .noise = block + n};
  if (washer) {
    sc.bg = block + n + plane;
    sc.alpha = sc.bg + n;
  }
  grad__rng rng;
  grad__rng_seed(&rng, image_seed);
  grad_status st = render_clean(category, &rng, &sc);
  if (st != GRAD_OK) {
    grad__free(block);
    return st;
  }
  /* Interleave the planes into pixels. */
  for (size_t i = 0; i < plane; i++)
    for (int k = 0; k < ch; k++) pixels[i * ch + k] = to_byte(sc.color[k * plane + i]);
  if (kind >= 0) {
    const defect_id d = categories[category].defects[kind];
    if (clean) memcpy(clean, pixels, n);
    memset(mask, 0, plane);
    defect_shape(&rng, &sc, d, mask);
    for (size_t i = 0; i < plane; i++) {
      if (!mask[i]) continue;
      uint8_t out[3];
      bool changed = false;
      for (int k = 0; k < ch; k++) {
        out[k] = to_byte(defect_color(&sc, d, k, i, sc.color[k * plane + i]));
        changed |= out[k] != pixels[i * ch + k];
      }
      /* Rounding or clamping left the pixel as it was: nudge it, so that the
       * mask stays exactly the changed pixels with no holes. */
      if (!changed) out[0] = (uint8_t)(out[0] < 128 ? out[0] + 24 : out[0] - 24);
      memcpy(pixels + i * ch, out, (size_t)ch);
    }
  }
  grad__free(block);
  return GRAD_OK;
}

/* ---- Writing ------------------------------------------------------------ */

static const grad_synth_options default_synth = {
  .struct_size = sizeof(grad_synth_options),
  .seed = 1,
  .size = 128,
  .train_count = 40,
  .test_count = 20,
};

void grad_synth_options_init(grad_synth_options *opts, size_t struct_size) {
  grad__struct_init(opts, struct_size, &default_synth, sizeof default_synth);
}

/* mkdir -p */
static grad_status make_dirs(const char *path) {
  char buf[4096];
  const size_t len = strlen(path);
  if (len >= sizeof buf) return grad__fail(GRAD_E_INVALID_ARG, "path too long: %s", path);
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    const char saved = buf[i];
    buf[i] = '\0';
    struct stat info;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return grad__fail(GRAD_E_IO, "cannot create directory %s: %s", buf, strerror(errno));
    if (stat(buf, &info) != 0 || !S_ISDIR(info.st_mode))
      return grad__fail(GRAD_E_IO, "%s exists and is not a directory", buf);
    buf[i] = saved;
  }
  return GRAD_OK;
}

static grad_status write_png(const char *dir, const char *name, const uint8_t *pixels, int size,
                             int channels) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
    return grad__fail(GRAD_E_INVALID_ARG, "path too long: %s/%s", dir, name);
  grad_status st = grad_png_write(path, pixels, size, size, channels, (size_t)size * channels);
  return st == GRAD_OK ? st : grad__fail_context(st, "synthetic data: ");
}

static grad_status write_category(const grad_synth_options *o, int c, uint8_t *pixels,
                                  uint8_t *mask) {
  const char *name = categories[c].name;
  const int ch = categories[c].channels, nd = categories[c].ndefects;
  char dir[4096], mask_dir[4096], file[64];
  grad_status st = GRAD_OK;
  /* Train and test good images. */
  for (int split = 0; split < 2 && st == GRAD_OK; split++) {
    const int kind = split == 0 ? GRAD__SYNTH_TRAIN : GRAD__SYNTH_TEST_GOOD;
    const int count = split == 0 ? o->train_count : (o->test_count + 3) / 4;
    snprintf(dir, sizeof dir, "%s/%s/%s/good", o->out_dir, name, split == 0 ? "train" : "test");
    if (count > 0) st = make_dirs(dir);
    for (int i = 0; i < count && st == GRAD_OK; i++) {
      st = grad__synth_render(c, kind, grad__synth_image_seed(o->seed, c, kind, i), o->size,
                              pixels, NULL, NULL);
      snprintf(file, sizeof file, "%03d.png", i);
      if (st == GRAD_OK) st = write_png(dir, file, pixels, o->size, ch);
    }
  }
  /* Defective test images, the defect types taking turns. */
  const int defective = o->test_count - (o->test_count + 3) / 4;
  for (int j = 0; j < defective && st == GRAD_OK; j++) {
    const int d = j % nd, i = j / nd;
    const char *dname = defect_names[categories[c].defects[d]];
    snprintf(dir, sizeof dir, "%s/%s/test/%s", o->out_dir, name, dname);
    snprintf(mask_dir, sizeof mask_dir, "%s/%s/ground_truth/%s", o->out_dir, name, dname);
    if (i == 0) st = make_dirs(dir);
    if (st == GRAD_OK && i == 0) st = make_dirs(mask_dir);
    if (st == GRAD_OK)
      st = grad__synth_render(c, d, grad__synth_image_seed(o->seed, c, d, i), o->size, pixels,
                              NULL, mask);
    snprintf(file, sizeof file, "%03d.png", i);
    if (st == GRAD_OK) st = write_png(dir, file, pixels, o->size, ch);
    snprintf(file, sizeof file, "%03d_mask.png", i);
    if (st == GRAD_OK) st = write_png(mask_dir, file, mask, o->size, 1);
  }
  return st;
}

grad_status grad_synth_write(const grad_synth_options *opts) {
  static const char *fn = "grad_synth_write";
  if (!opts) return grad__fail(GRAD_E_INVALID_ARG, "%s: opts is NULL", fn);
  grad_synth_options resolved = default_synth;
  grad_status rs = grad__struct_read("grad_synth_options", opts,
                                     GRAD__STRUCT_MIN(grad_synth_options, out_dir), &resolved,
                                     sizeof resolved);
  if (rs != GRAD_OK) return rs;
  opts = &resolved;
  if (!opts->out_dir || !*opts->out_dir)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: no out_dir", fn);
  if (opts->size < 32 || opts->size > 4096 || opts->train_count < 0 || opts->test_count < 0 ||
      opts->train_count > 100000 || opts->test_count > 100000)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: size %d must be in [32, 4096] and the counts "
                      "(train %d, test %d) in [0, 100000]", fn, opts->size, opts->train_count,
                      opts->test_count);
  const int only = opts->category ? category_index(opts->category) : -1;
  if (opts->category && only < 0)
    return grad__fail(GRAD_E_INVALID_ARG, "%s: unknown class \"%s\" (weave, marble, washer)", fn,
                      opts->category);
  const size_t plane = (size_t)opts->size * opts->size;
  uint8_t *pixels = grad__malloc(plane * 4);
  if (!pixels) return grad__fail(GRAD_E_NOMEM, "%s: out of memory", fn);
  grad_status st = make_dirs(opts->out_dir);
  for (int c = 0; c < GRAD__SYNTH_CATEGORIES && st == GRAD_OK; c++)
    if (only < 0 || c == only) st = write_category(opts, c, pixels, pixels + 3 * plane);
  grad__free(pixels);
  return st;
}
