/*
 * Crash safety of training checkpoints: a training process killed with
 * SIGKILL, also in the middle of writing a checkpoint, leaves the previous
 * checkpoint intact and loadable, and training resumed from it ends
 * bitwise where the uninterrupted run ends.
 *
 * Each round forks a child that trains toward EPOCHS epochs, resuming from
 * the checkpoint when there is one, and kills it one of three ways:
 *
 *  - mid-save, deterministically: after the child's first checkpoint of the
 *    round, its progress callback sets RLIMIT_FSIZE below the checkpoint's
 *    size, so the next save's write into its temporary file raises SIGXFSZ;
 *    the handler tells the parent through a pipe and waits, and the parent
 *    sends SIGKILL. The child dies with a partly written temporary file.
 *    The limits go from 0 bytes (the temporary file just created) to one
 *    byte short of the whole file.
 *  - racing a save: the parent polls the folder and sends SIGKILL as soon
 *    as a temporary file appears (usually mid-save; counted, not asserted).
 *  - after a delay: wherever the child happens to be.
 *
 * After every kill the checkpoint is absent (only before the first save
 * ever completed) or loads as a training checkpoint whose store is
 * bitwise the uninterrupted run's at that epoch, and its epoch never goes
 * back. A killed process can leave its temporary file ".NAME.XXXXXX"
 * behind (it never replaces the target); the test removes it.
 *
 * One OpenBLAS thread everywhere, so every run is bitwise reproducible.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "train_internal.h"

/* A store whose checkpoint is about 1 MB (the global grid is C*H*W x Rg x
 * Rg, saved with its two AdamW moments), so a save is a good part of an
 * epoch (4-6 ms of 10-25 ms on the 2-core dev machine) and worth racing. */
enum { CHANNELS = 16, HW = 16, BLOCKS = 1, IMAGES = 4, BATCH = 4, EPOCHS = 60 };
#define STORE_SEED 21
#define CKPT_NAME "ckpt.safetensors"
#define TEMP_PREFIX "." CKPT_NAME "."

typedef enum kill_mode { KILL_IN_WRITE, KILL_ON_TEMP_FILE, KILL_AFTER_DELAY } kill_mode;

typedef struct round_plan {
  kill_mode mode;
  double fraction;   /* KILL_IN_WRITE: RLIMIT_FSIZE as a fraction of the checkpoint's size */
  double delay;      /* KILL_AFTER_DELAY: in epochs of the reference run plus one save */
} round_plan;

/* fraction < 0: a limit of 0 bytes; fraction > 1: one byte short of the file. */
static const round_plan ROUNDS[] = {
    {KILL_AFTER_DELAY, 0, 0.0}, {KILL_IN_WRITE, -1, 0},      {KILL_ON_TEMP_FILE, 0, 0},
    {KILL_AFTER_DELAY, 0, 1.5}, {KILL_IN_WRITE, 0.3, 0},     {KILL_ON_TEMP_FILE, 0, 0},
    {KILL_AFTER_DELAY, 0, 3.0}, {KILL_IN_WRITE, 0.9, 0},     {KILL_ON_TEMP_FILE, 0, 0},
    {KILL_AFTER_DELAY, 0, 5.0}, {KILL_IN_WRITE, 2, 0},
};
enum { ROUND_COUNT = sizeof ROUNDS / sizeof ROUNDS[0] };

/* ---- helpers ------------------------------------------------------------ */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static grad_store *new_store(uint64_t seed) {
  grad__store_config config = {CHANNELS, HW, HW, 8, 4, BLOCKS, 0, 0};
  grad_store *store = NULL;
  ck_assert_int_eq(grad__store_create(&config, seed, &store), GRAD_OK);
  return store;
}

static grad__feature_cache *random_cache(void) {
  grad__feature_cache *cache = NULL;
  ck_assert_int_eq(grad__feature_cache_create(IMAGES, CHANNELS, HW, HW, 0, NULL, &cache), GRAD_OK);
  grad__rng rng;
  grad__rng_seed(&rng, 5);
  for (int i = 0; i < IMAGES; i++) {
    float *img = grad__feature_cache_image(cache, i);
    for (int k = 0; k < CHANNELS * HW * HW; k++) img[k] = (float)grad__rng_normal(&rng);
  }
  return cache;
}

static size_t all_count(grad_store *s) {
  return grad__store_param_count(s) + grad__store_buffer_count(s);
}

static grad__param *any_tensor(grad_store *s, size_t i) {
  size_t params = grad__store_param_count(s);
  return i < params ? grad__store_param(s, i) : grad__store_buffer(s, i - params);
}

/* FNV-1a over the bytes of every parameter and running statistic. */
static uint64_t store_hash(grad_store *s) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < all_count(s); i++) {
    const grad__param *p = any_tensor(s, i);
    const unsigned char *b = (const unsigned char *)p->value;
    for (size_t k = 0; k < p->count * sizeof(float); k++) h = (h ^ b[k]) * 1099511628211ull;
  }
  return h;
}

static bool stores_identical(grad_store *a, grad_store *b) {
  for (size_t i = 0; i < all_count(a); i++) {
    grad__param *pa = any_tensor(a, i), *pb = any_tensor(b, i);
    if (memcmp(pa->value, pb->value, pa->count * sizeof(float)) != 0) return false;
  }
  return true;
}

static grad_train_options options(void) {
  grad_train_options o;
  grad_train_options_init(&o, sizeof o);
  o.epochs = EPOCHS;
  o.batch = BATCH;
  o.lr_step_epochs = 5;
  o.seed = 7;
  return o;
}

/* The reference run records the store's hash after every epoch. */
typedef struct reference_log {
  grad_store *store;
  uint64_t hash[EPOCHS + 1];
} reference_log;

static int record_epoch(const grad_train_progress *p, void *user) {
  reference_log *log = user;
  if (p->epoch_done) log->hash[p->epoch + 1] = store_hash(log->store);
  return 0;
}

/* Temporary files of the checkpoint left in dir: their count, and the
 * size of the last one (-1 if none). remove: unlink them. */
static int temp_files(const char *dir, bool remove, long long *size) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int count = 0;
  if (size) *size = -1;
  char path[600];
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strncmp(e->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX)) != 0) continue;
    count++;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (size && stat(path, &st) == 0) *size = (long long)st.st_size;
    if (remove) ck_assert_int_eq(unlink(path), 0);
  }
  closedir(d);
  return count;
}

/* Whether dir holds a temporary file of the checkpoint; no Check calls
 * (used in the polling loop). */
static bool temp_file_exists(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return false;
  bool found = false;
  for (struct dirent *e; !found && (e = readdir(d)) != NULL;)
    found = strncmp(e->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX)) == 0;
  closedir(d);
  return found;
}

/* The checkpoint's epoch (-1 when there is none), after checking that it
 * loads into a fresh trainer and holds the reference's store at that epoch. */
static int checked_checkpoint_epoch(const char *path, grad__feature_cache *cache,
                                    const reference_log *ref, int round) {
  if (access(path, F_OK) != 0) return -1;
  grad_store *store = new_store(99); /* another init: everything comes from the file */
  grad_train_options o = options();
  grad__trainer *t = NULL;
  ck_assert_int_eq(grad__trainer_create(store, &o, BATCH, &t), GRAD_OK);
  grad_status st = grad__train_checkpoint_load(t, grad__feature_cache_count(cache), path);
  ck_assert_msg(st == GRAD_OK, "round %d: the checkpoint left by the killed run does not load: %s",
                round, grad_last_error());
  int epoch = t->epoch;
  ck_assert_int_ge(epoch, 1);
  ck_assert_int_le(epoch, EPOCHS);
  ck_assert_msg(store_hash(store) == ref->hash[epoch],
                "round %d: the checkpoint of epoch %d is not the uninterrupted run's", round,
                epoch);
  grad__trainer_free(t);
  grad_store_free(store);
  return epoch;
}

/* ---- the child ------------------------------------------------------------- */

static int notify_fd = -1;

/* Runs inside the write that crossed RLIMIT_FSIZE: says so, then waits
 * for the SIGKILL with the temporary file half written. */
static void on_file_size_limit(int sig) {
  (void)sig;
  char c = 'x';
  ssize_t w = write(notify_fd, &c, 1);
  (void)w;
  for (;;) pause();
}

typedef struct child_arm {
  int after_epochs;  /* 0: never */
  rlim_t limit;
  int epochs_seen;
} child_arm;

/* The progress callback runs after an epoch's last step and before its
 * checkpoint is saved, so the limit catches that epoch's save. */
static int arm_limit(const grad_train_progress *p, void *user) {
  child_arm *arm = user;
  if (p->epoch_done && ++arm->epochs_seen == arm->after_epochs) {
    struct rlimit rl = {arm->limit, arm->limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(4);
  }
  return 0;
}

/* Never returns; no Check calls (the parent owns the test's result). */
static void child_train(grad__feature_cache *cache, const char *path, child_arm *arm, int fd) {
  notify_fd = fd;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_file_size_limit;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGXFSZ, &sa, NULL) != 0) _exit(5);
  grad__store_config config = {CHANNELS, HW, HW, 8, 4, BLOCKS, 0, 0};
  grad_store *store = NULL;
  if (grad__store_create(&config, STORE_SEED, &store) != GRAD_OK) _exit(6);
  grad_train_options o = options();
  o.checkpoint_path = path;
  o.checkpoint_every = 1;
  o.progress = arm_limit;
  o.progress_user = arm;
  const char *resume = access(path, F_OK) == 0 ? path : NULL;
  grad_status st = grad__train_store(store, cache, &o, resume, NULL);
  _exit(st == GRAD_OK ? 0 : 3);
}

/* ---- the test ------------------------------------------------------------ */

START_TEST(killed_training_resumes_from_intact_checkpoint) {
  grad_threads_set(1);
  grad__feature_cache *cache = random_cache();
  char dir[256], path[512];
  snprintf(dir, sizeof dir, "%s", test_tmpdir());
  snprintf(path, sizeof path, "%s/%s", dir, CKPT_NAME);

  /* The uninterrupted run, with its store after every epoch. */
  grad_store *reference = new_store(STORE_SEED);
  reference_log ref = {reference, {0}};
  grad_train_options o = options();
  o.progress = record_epoch;
  o.progress_user = &ref;
  double t0 = now();
  ck_assert_int_eq(grad__train_store(reference, cache, &o, NULL, NULL), GRAD_OK);
  double epoch_seconds = (now() - t0) / EPOCHS;
  /* One save, to know a checkpoint's size and how long writing it takes. */
  t0 = now();
  {
    grad__trainer *t = NULL;
    ck_assert_int_eq(grad__trainer_create(reference, &o, BATCH, &t), GRAD_OK);
    ck_assert_int_eq(grad__train_checkpoint_save(t, IMAGES, path), GRAD_OK);
    grad__trainer_free(t);
  }
  double save_seconds = now() - t0;
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  long long ckpt_bytes = (long long)st.st_size;
  ck_assert_int_eq(unlink(path), 0);
  fprintf(stderr, "crash: epoch (with no save) %.1f ms, checkpoint %lld bytes saved in %.1f ms\n",
          1e3 * epoch_seconds, ckpt_bytes, 1e3 * save_seconds);

  int epoch = -1, in_write_kills = 0, temp_file_kills = 0, racing_hits = 0, racing_rounds = 0;
  double rounds_start = now();
  for (int round = 0; round < ROUND_COUNT; round++) {
    const round_plan *plan = &ROUNDS[round];
    int done = epoch < 0 ? 0 : epoch;
    child_arm arm = {0, 0, 0};
    int expect = -1;
    if (plan->mode == KILL_IN_WRITE) {
      ck_assert_msg(done < EPOCHS, "round %d: training already finished", round);
      /* Let one save complete in this round when there is room for two. */
      arm.after_epochs = EPOCHS - done >= 2 ? 2 : 1;
      expect = arm.after_epochs == 2 ? done + 1 : epoch;
      arm.limit = plan->fraction < 0   ? 0
                  : plan->fraction > 1 ? (rlim_t)(ckpt_bytes - 1)
                                       : (rlim_t)(plan->fraction * (double)ckpt_bytes);
    }
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
      close(fds[0]);
      child_train(cache, path, &arm, fds[1]);
    }
    close(fds[1]);

    bool exited = false;
    int status = 0;
    if (plan->mode == KILL_IN_WRITE) {
      struct pollfd pfd = {fds[0], POLLIN, 0};
      int ready = poll(&pfd, 1, 60000);
      char c = 0;
      if (ready != 1 || read(fds[0], &c, 1) != 1) {
        kill(child, SIGKILL); /* leave no child behind the failure */
        waitpid(child, &status, 0);
        ck_abort_msg("round %d: the child never reached its file size limit (status 0x%x)",
                     round, status);
      }
    } else if (plan->mode == KILL_ON_TEMP_FILE) {
      double give_up = now() + 60;
      while (!temp_file_exists(dir) && now() < give_up) {
        if (waitpid(child, &status, WNOHANG) == child) {
          exited = true;
          break;
        }
      }
    } else {
      double delay = plan->delay * (epoch_seconds + save_seconds);
      struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
      nanosleep(&ts, NULL);
    }
    if (!exited) {
      ck_assert_int_eq(kill(child, SIGKILL), 0);
      ck_assert_int_eq(waitpid(child, &status, 0), child);
    }
    close(fds[0]);
    ck_assert_msg(WIFSIGNALED(status) ? WTERMSIG(status) == SIGKILL
                                      : WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "round %d: the child failed (status 0x%x)", round, status);

    long long temp_bytes = -1;
    int temps = temp_files(dir, false, &temp_bytes);
    ck_assert_int_le(temps, 1);
    int now_epoch = checked_checkpoint_epoch(path, cache, &ref, round);
    ck_assert_msg(now_epoch >= epoch, "round %d: checkpoint went back from epoch %d to %d",
                  round, epoch, now_epoch);
    if (plan->mode == KILL_IN_WRITE) {
      /* Killed inside the save: its temporary file is there, cut at the
       * limit, and the target is the previous save. */
      ck_assert_int_eq(temps, 1);
      ck_assert_int_le(temp_bytes, (long long)arm.limit);
      ck_assert_int_eq(now_epoch, expect);
      in_write_kills++;
    }
    if (plan->mode == KILL_ON_TEMP_FILE) racing_rounds++, racing_hits += temps;
    temp_file_kills += temps;
    fprintf(stderr, "crash: round %d (%s): checkpoint epoch %d, %s\n", round,
            plan->mode == KILL_IN_WRITE       ? "in write"
            : plan->mode == KILL_ON_TEMP_FILE ? "on temp file"
                                              : "after delay",
            now_epoch, temps ? "killed mid-save" : "no save in progress");
    if (temps) fprintf(stderr, "crash:   temporary file of %lld bytes left\n", temp_bytes);
    temp_files(dir, true, NULL); /* what a killed save leaves behind */
    epoch = now_epoch;
  }
  double rounds_seconds = now() - rounds_start;
  fprintf(stderr,
          "crash: %d rounds in %.2f s, %d killed mid-save (%d forced in write, %d of %d "
          "racing the temporary file)\n",
          ROUND_COUNT, rounds_seconds, temp_file_kills, in_write_kills, racing_hits, racing_rounds);
  ck_assert_int_ge(in_write_kills, 1);
  ck_assert_int_ge(epoch, 1);
  ck_assert_int_lt(epoch, EPOCHS); /* the resume below still has work */

  /* Resume in this process to the end: bitwise the uninterrupted run. */
  grad_store *resumed = new_store(1234);
  o = options();
  grad__train_report report;
  ck_assert_int_eq(grad__train_store(resumed, cache, &o, path, &report), GRAD_OK);
  ck_assert_int_eq(report.start_epoch, epoch);
  ck_assert_int_eq(report.epochs_done, EPOCHS);
  ck_assert(stores_identical(resumed, reference));
  fprintf(stderr, "crash: resumed from epoch %d to %d: bitwise the uninterrupted run\n", epoch,
          EPOCHS);

  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0);
  grad_store_free(resumed);
  grad_store_free(reference);
  grad__feature_cache_free(cache);
}
END_TEST

int main(void) {
  Suite *s = suite_create("crash_safety");
  TCase *tc = tcase_create("crash_safety");
  tcase_set_timeout(tc, 110);
  tcase_add_test(tc, killed_training_resumes_from_intact_checkpoint);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
