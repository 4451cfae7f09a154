/* Helpers shared by the Check test programs. */
#ifndef GRAD_TESTUTIL_H
#define GRAD_TESTUTIL_H

#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Folder of committed fixtures (tests/fixtures), from the build. */
static inline const char *test_fixtures_dir(void) {
  const char *dir = getenv("GRAD_TEST_FIXTURES");
  return dir ? dir : "tests/fixtures";
}

/* Path of a fixture in a static buffer (one at a time). */
static inline const char *test_fixture(const char *name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s", test_fixtures_dir(), name);
  return path;
}

/* The real MVTec-layout data (../shared/data/real), or NULL when absent:
 * tests that need it return early and say they skipped. */
static inline const char *test_shared_data(void) {
  const char *dir = getenv("GRAD_SHARED_DATA");
  if (!dir) return NULL;
  FILE *probe = NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/SOURCES.md", dir);
  probe = fopen(path, "r");
  if (!probe) return NULL;
  fclose(probe);
  return dir;
}

#define TEST_SKIP_WITHOUT_SHARED_DATA(var)                                   \
  const char *var = test_shared_data();                                      \
  if (!var) {                                                                \
    fprintf(stderr, "SKIP %s: ../shared/data/real not found\n", __func__);   \
    return;                                                                  \
  }

/* The temporary directories this process made, removed with all they
 * hold when it exits (each forked test removes its own): they once filled
 * a disk, 19,000 of them. GRAD_TEST_KEEP_TMP=1 keeps them for a look. */
enum { TEST_TMPDIRS = 64 };
static struct {
  pid_t pid;
  int count;
  char dirs[TEST_TMPDIRS][32];
} test_tmpdirs;

static inline int test_remove_entry(const char *path, const struct stat *st, int type,
                                    struct FTW *ftw) {
  (void)st, (void)type, (void)ftw;
  return remove(path);
}

/* Removes a folder and everything in it. */
static inline void test_remove_tree(const char *dir) {
  nftw(dir, test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void test_remove_tmpdirs(void) {
  if (test_tmpdirs.pid != getpid() || getenv("GRAD_TEST_KEEP_TMP")) return;
  for (int i = 0; i < test_tmpdirs.count; i++) test_remove_tree(test_tmpdirs.dirs[i]);
  test_tmpdirs.count = 0;
}

/* A fresh temporary directory (mkdtemp) for outputs; path in a static
 * buffer; removed at exit (above). */
static inline const char *test_tmpdir(void) {
  static char dir[32];
  snprintf(dir, sizeof dir, "/tmp/grad-test-XXXXXX");
  if (!mkdtemp(dir)) return "/tmp";
  if (test_tmpdirs.pid != getpid()) { /* a forked test: start its own list */
    if (test_tmpdirs.pid == 0) atexit(test_remove_tmpdirs);
    test_tmpdirs.pid = getpid();
    test_tmpdirs.count = 0;
  }
  if (test_tmpdirs.count < TEST_TMPDIRS)
    memcpy(test_tmpdirs.dirs[test_tmpdirs.count++], dir, sizeof dir);
  return dir;
}

/* The tests' deterministic random numbers: a linear congruential step of
 * *state, in [-1, 1). */
static inline double test_uniform(unsigned *state) {
  *state = *state * 1664525u + 1013904223u;
  return (*state >> 8) / 8388608.0 - 1.0;
}

/* max |a - b| over n values, and max |b|, for normalised comparisons. */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n, double *max_ref) {
  double worst = 0.0, ref = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= worst)) worst = d; /* NaN propagates as the worst case */
    if (fabs((double)b[i]) > ref) ref = fabs((double)b[i]);
  }
  if (max_ref) *max_ref = ref;
  return worst;
}

/* Asserts max|a-b| <= rel * max|b| (+ a tiny absolute floor). */
#define ck_assert_close_rel(a, b, n, rel)                                          \
  do {                                                                           \
    double ref_;                                                                 \
    double diff_ = test_max_abs_diff((a), (b), (n), &ref_);                      \
    ck_assert_msg(diff_ <= (rel) * ref_ + 1e-30, "max|diff| %g > %g * max|ref| %g", \
                  diff_, (double)(rel), ref_);                                   \
  } while (0)

/* Runs one suite in fork mode (unless the environment says CK_FORK=no, as
 * the valgrind and TSan jobs do) and returns the process exit code. */
static inline int test_run_suite(Suite *suite) {
  SRunner *runner = srunner_create(suite);
  srunner_set_fork_status(runner, CK_FORK_GETENV);
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
