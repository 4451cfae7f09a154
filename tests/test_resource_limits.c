/*
 * Resource limits must give errors, not hangs. Under an address-space limit
 * (ulimit -v) scoring and training fail with GRAD_E_NOMEM instead of
 * spinning inside OpenBLAS's buffer allocator (which retries a failed malloc
 * forever); under a thread limit (ulimit -u) grad_threads_set uses the
 * threads that can start and says why, instead of OpenBLAS waiting forever
 * for a thread it could not create. Each case runs in a fresh process (this
 * program exec'ed again), so OpenBLAS starts under the limit as it does in
 * a real run; the parent kills it after a time limit, which fails the test.
 */
#include <grp.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grad/backbone.h>

#include "core.h"
#include "pca.h"
#include "testutil.h"

enum { CHILD_SECONDS = 20 };
#define CHILD_FLAG "--limited-child"
#define THREADS_FLAG "--thread-limited-child"

/* Bytes of address space the process maps now. */
static size_t mapped_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* In the child: the limit is what is mapped now plus `headroom_mb`; then a
 * backbone pass (the scoring path) and a channel-reduction fit (the
 * training path). Exit 0: both OK; 2: both GRAD_E_NOMEM naming OpenBLAS
 * and the limit; 1: anything else (printed). */
static int limited_child(long headroom_mb) {
  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.arch = "resnet18";
  opts.layers = GRAD_BACKBONE_LAYER(1);
  opts.input_size = 64;
  opts.output_stride = 4;
  grad_backbone *bb = NULL;
  grad_workspace *ws = NULL;
  if (grad_backbone_create(&opts, &bb) != GRAD_OK || grad_workspace_create(&ws) != GRAD_OK) {
    fprintf(stderr, "setup: %s\n", grad_last_error());
    return 1;
  }
  /* The OpenBLAS guard is on the im2col engine's path; the oneDNN engine
   * takes no OpenBLAS buffer at all. */
  if (grad_backbone_compute_set(bb, GRAD_ENGINE_IM2COL, GRAD_PRECISION_FP32) != GRAD_OK) return 1;
  int channels = grad_backbone_feature_channels(bb);
  size_t positions = (size_t)grad_backbone_feature_height(bb) * grad_backbone_feature_width(bb);
  float *input = calloc(3 * 64 * 64, sizeof(float));
  float *features = calloc((size_t)channels * positions, sizeof(float));
  grad__pca_fit *fit = NULL;
  if (!input || !features || grad__pca_fit_create(channels, &fit) != GRAD_OK) return 1;
  for (size_t i = 0; i < 3 * 64 * 64; i++) input[i] = (float)(i % 7) - 3.0f;

  struct rlimit limit;
  limit.rlim_cur = limit.rlim_max = mapped_bytes() + ((size_t)headroom_mb << 20);
  if (setrlimit(RLIMIT_AS, &limit) != 0) {
    perror("setrlimit");
    return 1;
  }
  grad_status scoring = grad_backbone_features(bb, ws, input, 1, features);
  char scoring_message[1024];
  snprintf(scoring_message, sizeof scoring_message, "%s", grad_last_error());
  grad_status training = grad__pca_fit_add(fit, features, 1, positions, ws);
  fprintf(stderr, "headroom %ld MB: scoring %s (%s), training %s (%s)\n", headroom_mb,
          grad_status_name(scoring), scoring_message, grad_status_name(training),
          grad_last_error());
  if (scoring == GRAD_OK && training == GRAD_OK) return 0;
  if (scoring == GRAD_E_NOMEM && training == GRAD_E_NOMEM &&
      strstr(scoring_message, "OpenBLAS") && strstr(grad_last_error(), "ulimit -v"))
    return 2;
  return 1;
}

/* In the child: no further thread can start (RLIMIT_NPROC, as an
 * unprivileged user when run as root, for whom the limit does not apply).
 * Exit 0 when grad_threads_set(2) falls back to 1 thread with a message
 * about the limit and a convolution then completes; 77 when the limit could
 * not be set up here; 1 otherwise. */
static int thread_limited_child(void) {
  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.arch = "resnet18";
  opts.layers = GRAD_BACKBONE_LAYER(1);
  opts.input_size = 64;
  grad_backbone *bb = NULL;
  grad_workspace *ws = NULL;
  if (grad_backbone_create(&opts, &bb) != GRAD_OK || grad_workspace_create(&ws) != GRAD_OK)
    return 1;
  size_t out = (size_t)grad_backbone_feature_channels(bb) * grad_backbone_feature_height(bb) *
               grad_backbone_feature_width(bb);
  float *input = calloc(3 * 64 * 64, sizeof(float)), *features = calloc(out, sizeof(float));
  if (!input || !features) return 1;
  if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
    return 77;
  struct rlimit one = {1, 1};
  if (setrlimit(RLIMIT_NPROC, &one) != 0) return 77;
  grad_threads_set(2);
  int threads = grad_threads_get();
  fprintf(stderr, "threads %d: %s\n", threads, grad_last_error());
  if (threads != 1 || !strstr(grad_last_error(), "ulimit -u")) return 1;
  grad_status s = grad_backbone_features(bb, ws, input, 1, features);
  return s == GRAD_OK ? 0 : 1;
}

/* Runs this program as a limited child with one OpenBLAS thread (a thread
 * OpenBLAS starts when it is loaded takes its buffer before any libgrad code
 * runs: see docs/reliability.md); its exit code, or -1 when it had to be
 * killed. */
static int run_child(long headroom_mb) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    char mb[32];
    snprintf(mb, sizeof mb, "%ld", headroom_mb);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    if (headroom_mb < 0)
      execl("/proc/self/exe", "test_resource_limits", THREADS_FLAG, (char *)NULL);
    else
      execl("/proc/self/exe", "test_resource_limits", CHILD_FLAG, mb, (char *)NULL);
    _exit(127);
  }
  struct timespec start, now, nap = {0, 20 * 1000 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status;
    pid_t done = waitpid(pid, &status, WNOHANG);
    ck_assert_int_ge(done, 0);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > CHILD_SECONDS) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    nanosleep(&nap, NULL);
  }
}

START_TEST(address_space_limit_gives_nomem_not_a_hang) {
  /* 64 MB more than the process maps: room for libgrad's own buffers,
   * not for OpenBLAS's 128 MB one. */
  int code = run_child(64);
  ck_assert_msg(code != -1, "the limited child still ran after %d s (spinning in OpenBLAS?)",
                CHILD_SECONDS);
  ck_assert_int_eq(code, 2);
}
END_TEST

/* The check must not refuse what fits: with 512 MB more, both pass. */
START_TEST(enough_address_space_still_works) {
  ck_assert_int_eq(run_child(512), 0);
}
END_TEST

/* One thread at start (OPENBLAS_NUM_THREADS=1), then 2 asked for while no
 * thread can start. */
START_TEST(thread_limit_is_explained_not_a_hang) {
  int code = run_child(-1);
  if (code == 77) {
    fprintf(stderr, "SKIP %s: cannot set a thread limit here\n", __func__);
    return;
  }
  ck_assert_msg(code != -1, "the thread-limited child still ran after %d s", CHILD_SECONDS);
  ck_assert_int_eq(code, 0);
}
END_TEST

int main(int argc, char **argv) {
  /* The children end with _exit: they stop mid-way on purpose, under limits
   * where a leak checker at exit could not run anyway. */
  if (argc == 3 && strcmp(argv[1], CHILD_FLAG) == 0) _exit(limited_child(atol(argv[2])));
  if (argc == 2 && strcmp(argv[1], THREADS_FLAG) == 0) _exit(thread_limited_child());
  Suite *suite = suite_create("resource_limits");
  TCase *tc = tcase_create("resource_limits");
  tcase_set_timeout(tc, CHILD_SECONDS + 30);
  tcase_add_test(tc, address_space_limit_gives_nomem_not_a_hang);
  tcase_add_test(tc, enough_address_space_still_works);
  tcase_add_test(tc, thread_limit_is_explained_not_a_hang);
  suite_add_tcase(suite, tc);
  return test_run_suite(suite);
}
