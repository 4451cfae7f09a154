/*
 * The synthetic data set: same seed -> identical files, another seed ->
 * different ones; the MVTec layout and counts; masks exactly the pixels a
 * defect changed against the clean rendering, and the written files equal
 * to the internal rendering.
 */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <dirent.h>
#include <grad/synth.h>
#include <grad/image.h>

#include "synth_internal.h"
#include "testutil.h"

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static unsigned char *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static int same_bytes(const char *a, const char *b) {
  size_t na, nb;
  unsigned char *x = read_all(a, &na), *y = read_all(b, &nb);
  int same = na == nb && !memcmp(x, y, na);
  free(x);
  free(y);
  return same;
}

static void write_set(const char *dir, uint64_t seed) {
  grad_synth_options o;
  grad_synth_options_init(&o, sizeof o);
  o.out_dir = dir;
  o.seed = seed;
  o.size = 64;
  o.train_count = 3;
  o.test_count = 8; /* 2 good, 6 defective: 2 per defect type */
  ck_assert_msg(grad_synth_write(&o) == GRAD_OK, "%s", grad_last_error());
}

START_TEST(same_seed_same_bytes) {
  char a[512], b[512], c[512], pa[1024], pb[1024], pc[1024];
  snprintf(a, sizeof a, "%s/a", test_tmpdir());
  snprintf(b, sizeof b, "%s/b", test_tmpdir());
  snprintf(c, sizeof c, "%s/c", test_tmpdir());
  write_set(a, 42);
  write_set(b, 42);
  write_set(c, 43);
  static const char *files[] = {
    "weave/train/good/000.png", "marble/test/good/001.png", "washer/test/missing/001.png",
    "washer/ground_truth/extra/000_mask.png", "marble/test/crack/000.png",
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
    snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
    snprintf(pc, sizeof pc, "%s/%s", c, files[i]);
    ck_assert_msg(same_bytes(pa, pb), "%s differs between two runs with seed 42", files[i]);
    ck_assert_msg(!same_bytes(pa, pc), "%s is the same for seeds 42 and 43", files[i]);
  }
  /* Within one set, images differ from each other. */
  snprintf(pa, sizeof pa, "%s/weave/train/good/000.png", a);
  snprintf(pb, sizeof pb, "%s/weave/train/good/001.png", a);
  ck_assert(!same_bytes(pa, pb));
}
END_TEST

START_TEST(mvtec_layout) {
  char root[512], dir[1024], path[1200];
  snprintf(root, sizeof root, "%s/set", test_tmpdir());
  write_set(root, 7);
  for (int c = 0; grad_synth_category_name(c); c++) {
    const char *cat = grad_synth_category_name(c);
    snprintf(dir, sizeof dir, "%s/%s/train/good", root, cat);
    ck_assert_int_eq(count_files(dir), 3);
    snprintf(dir, sizeof dir, "%s/%s/test/good", root, cat);
    ck_assert_int_eq(count_files(dir), 2);
    snprintf(dir, sizeof dir, "%s/%s/test", root, cat);
    ck_assert_int_eq(count_files(dir), 1 + grad__synth_defect_count(c));
    snprintf(dir, sizeof dir, "%s/%s/ground_truth", root, cat);
    ck_assert_int_eq(count_files(dir), grad__synth_defect_count(c)); /* no "good" masks */
    for (int d = 0; grad_synth_defect_name(cat, d); d++) {
      const char *def = grad_synth_defect_name(cat, d);
      snprintf(dir, sizeof dir, "%s/%s/test/%s", root, cat, def);
      ck_assert_int_eq(count_files(dir), 2);
      for (int i = 0; i < 2; i++) {
        grad_image *img = NULL, *mask = NULL;
        snprintf(path, sizeof path, "%s/%s/test/%s/%03d.png", root, cat, def, i);
        ck_assert_msg(grad_image_load(path, &img) == GRAD_OK, "%s", grad_last_error());
        snprintf(path, sizeof path, "%s/%s/ground_truth/%s/%03d_mask.png", root, cat, def, i);
        ck_assert_msg(grad_image_load(path, &mask) == GRAD_OK, "%s", grad_last_error());
        ck_assert_int_eq(grad_image_width(mask), grad_image_width(img));
        ck_assert_int_eq(grad_image_height(mask), grad_image_height(img));
        ck_assert_int_eq(grad_image_channels(mask), 1);
        ck_assert_int_eq(grad_image_channels(img), grad__synth_channels(c));
        const uint8_t *m = grad_image_pixels(mask);
        size_t on = 0;
        for (int p = 0; p < 64 * 64; p++) {
          ck_assert_msg(m[p] == 0 || m[p] == 255, "mask value %d", m[p]);
          on += m[p] == 255;
        }
        ck_assert_msg(on >= 5 && on < 64 * 64 / 2, "%s: %zu mask pixels", path, on);
        grad_image_free(img);
        grad_image_free(mask);
      }
    }
  }
  ck_assert_ptr_null(grad_synth_defect_name("nope", 0));
  grad_synth_options o;
  grad_synth_options_init(&o, sizeof o);
  o.out_dir = root;
  o.category = "nope";
  ck_assert_int_eq(grad_synth_write(&o), GRAD_E_INVALID_ARG);
  o.category = NULL;
  o.size = 16;
  ck_assert_int_eq(grad_synth_write(&o), GRAD_E_INVALID_ARG);
}
END_TEST

/* Every class and defect: the mask is 255 exactly where the defective
 * rendering differs from the clean one, and the files hold the rendering. */
START_TEST(masks_are_exactly_the_changed_pixels) {
  const int size = 96;
  char root[512], path[1200];
  snprintf(root, sizeof root, "%s/exact", test_tmpdir());
  grad_synth_options o;
  grad_synth_options_init(&o, sizeof o);
  o.out_dir = root;
  o.seed = 5;
  o.size = size;
  o.train_count = 0;
  o.test_count = 8;
  ck_assert_int_eq(grad_synth_write(&o), GRAD_OK);
  const size_t plane = (size_t)size * size;
  uint8_t *pix = malloc(plane * 3), *clean = malloc(plane * 3), *mask = malloc(plane);
  for (int c = 0; c < GRAD__SYNTH_CATEGORIES; c++) {
    const int ch = grad__synth_channels(c);
    const char *cat = grad_synth_category_name(c);
    for (int d = 0; d < grad__synth_defect_count(c); d++)
      for (int i = 0; i < 2; i++) {
        uint64_t seed = grad__synth_image_seed(5, c, d, i);
        ck_assert_int_eq(grad__synth_render(c, d, seed, size, pix, clean, mask), GRAD_OK);
        size_t changed = 0;
        for (size_t p = 0; p < plane; p++) {
          int differs = memcmp(pix + p * ch, clean + p * ch, (size_t)ch) != 0;
          ck_assert_msg((mask[p] == 255) == differs && (mask[p] == 0 || mask[p] == 255),
                        "%s defect %d image %d pixel %zu: mask %d, changed %d", cat, d, i, p,
                        mask[p], differs);
          changed += differs;
        }
        ck_assert_uint_gt(changed, 0);
        /* The clean rendering is the good image of the same seed. */
        uint8_t *good = malloc(plane * 3);
        ck_assert_int_eq(grad__synth_render(c, GRAD__SYNTH_TEST_GOOD, seed, size, good, NULL,
                                            NULL), GRAD_OK);
        ck_assert(!memcmp(good, clean, plane * ch));
        free(good);
        /* The written files decode to the same pixels and mask. */
        grad_image *img = NULL, *m = NULL;
        const char *def = grad_synth_defect_name(cat, d);
        snprintf(path, sizeof path, "%s/%s/test/%s/%03d.png", root, cat, def, i);
        ck_assert_int_eq(grad_image_load(path, &img), GRAD_OK);
        ck_assert(!memcmp(grad_image_pixels(img), pix, plane * ch));
        snprintf(path, sizeof path, "%s/%s/ground_truth/%s/%03d_mask.png", root, cat, def, i);
        ck_assert_int_eq(grad_image_load(path, &m), GRAD_OK);
        ck_assert(!memcmp(grad_image_pixels(m), mask, plane));
        grad_image_free(img);
        grad_image_free(m);
      }
  }
  free(pix);
  free(clean);
  free(mask);
}
END_TEST

int main(void) {
  Suite *s = suite_create("synth");
  TCase *tc = tcase_create("synth");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, same_seed_same_bytes);
  tcase_add_test(tc, mvtec_layout);
  tcase_add_test(tc, masks_are_exactly_the_changed_pixels);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
