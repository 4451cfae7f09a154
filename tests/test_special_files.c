/*
 * Paths that are not regular files: FIFOs, devices and symlinks given as
 * inputs or outputs. Every read is refused without blocking (GRAD_E_IO
 * naming the path and what it is); writes go through a symlink to the file
 * it names, keeping the link. An alarm turns a regression (a blocking open)
 * into a failure instead of a hang, also when Check does not fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grad/backbone.h>
#include <grad/image.h>
#include <grad/model.h>
#include <grad/tensorfile.h>

#include "core.h"
#include "dataset.h"
#include "safetensors.h"
#include "testutil.h"

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "an open blocked: alarm after 10 s\n";
  ssize_t n = write(2, msg, sizeof msg - 1);
  (void)n;
  _exit(3);
}

static void arm_alarm(void) {
  signal(SIGALRM, on_alarm);
  alarm(10);
}

#define ck_assert_fails(call, status, needle)                                    \
  do {                                                                           \
    grad_status s_ = (call);                                                     \
    ck_assert_msg(s_ == (status), "%s gave %s (%s)", #call, grad_status_name(s_), \
                  grad_last_error());                                            \
    ck_assert_msg(strstr(grad_last_error(), (needle)) != NULL,                   \
                  "message \"%s\" does not name \"%s\"", grad_last_error(), (needle)); \
  } while (0)

static bool is_fifo(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISFIFO(st.st_mode);
}

START_TEST(fifo_inputs_are_refused_without_blocking) {
  arm_alarm();
  const char *dir = test_tmpdir();
  char fifo[512];
  snprintf(fifo, sizeof fifo, "%s/input.png", dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);

  grad_image *image = (grad_image *)1;
  ck_assert_fails(grad_image_load(fifo, &image), GRAD_E_IO, fifo);
  ck_assert_ptr_null(image);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "FIFO"));

  grad_tensorfile *tf = NULL;
  ck_assert_fails(grad_tensorfile_open(fifo, &tf), GRAD_E_IO, fifo);
  grad_model *model = NULL;
  ck_assert_fails(grad_model_load(fifo, &model), GRAD_E_IO, fifo);
  size_t bytes = 1;
  ck_assert_fails(grad_model_file_bytes(fifo, &bytes), GRAD_E_IO, fifo);

  grad_backbone_options opts;
  grad_backbone_options_init(&opts, sizeof opts);
  opts.weights_path = fifo;
  grad_backbone *bb = NULL;
  ck_assert_fails(grad_backbone_create(&opts, &bb), GRAD_E_IO, fifo);

  /* Inside a data-set folder: listed by its name, refused when read. */
  grad__path_list list = {0};
  ck_assert_int_eq(grad__training_images(dir, &list), GRAD_OK);
  ck_assert_uint_eq(list.count, 1);
  ck_assert_fails(grad_image_load(list.paths[0], &image), GRAD_E_IO, fifo);
  grad__path_list_free(&list);

  ck_assert(is_fifo(fifo));
  unlink(fifo);
  rmdir(dir);
}
END_TEST

START_TEST(devices_are_refused_as_inputs) {
  arm_alarm();
  grad_image *image = NULL;
  /* /dev/zero would be read forever by a loader that trusted st_size 0. */
  ck_assert_fails(grad_image_load("/dev/zero", &image), GRAD_E_IO, "character device");
  grad_tensorfile *tf = NULL;
  ck_assert_fails(grad_tensorfile_open("/dev/zero", &tf), GRAD_E_IO, "/dev/zero");
}
END_TEST

/* A FIFO as the output: with no reader the save fails at once (a blocking
 * open would wait for one forever); with a reader it is written in place. */
START_TEST(fifo_outputs_never_block) {
  arm_alarm();
  const char *dir = test_tmpdir();
  char fifo[512];
  snprintf(fifo, sizeof fifo, "%s/out.png", dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  ck_assert_fails(grad_png_write(fifo, px, 2, 2, 3, 6), GRAD_E_IO, fifo);
  ck_assert_ptr_nonnull(strstr(grad_last_error(), "no process reads"));
  ck_assert(is_fifo(fifo));

  int reader = open(fifo, O_RDONLY | O_NONBLOCK);
  ck_assert_int_ge(reader, 0);
  ck_assert_int_eq(grad_png_write(fifo, px, 2, 2, 3, 6), GRAD_OK);
  unsigned char got[8];
  ck_assert_int_eq(read(reader, got, 8), 8);
  ck_assert_int_eq(memcmp(got, "\x89PNG\r\n\x1a\n", 8), 0);
  close(reader);
  ck_assert(is_fifo(fifo));
  unlink(fifo);
  rmdir(dir);
}
END_TEST

static void read_link(const char *link, char *buf, size_t size) {
  ssize_t n = readlink(link, buf, size - 1);
  ck_assert_int_gt(n, 0);
  buf[n] = 0;
}

/* Saves through a symlink write the file it names, relative or absolute,
 * existing or not yet (a dangling link), and keep the link. */
START_TEST(saves_through_symlinks_keep_the_link) {
  const char *dir = test_tmpdir();
  char sub[512], real[600], link_rel[512], link_dangling[512], chain[512], target[600];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  snprintf(real, sizeof real, "%s/real.png", sub);
  snprintf(link_rel, sizeof link_rel, "%s/rel.png", dir);
  snprintf(link_dangling, sizeof link_dangling, "%s/dangling.png", dir);
  snprintf(chain, sizeof chain, "%s/chain.png", dir);
  ck_assert_int_eq(symlink("sub/real.png", link_rel), 0);
  ck_assert_int_eq(symlink("sub/new.png", link_dangling), 0);
  ck_assert_int_eq(symlink("rel.png", chain), 0);
  uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

  /* Dangling: the file it names is created, the link stays a link. */
  ck_assert_int_eq(grad_png_write(link_dangling, px, 2, 2, 3, 6), GRAD_OK);
  snprintf(target, sizeof target, "%s/new.png", sub);
  struct stat st;
  ck_assert_int_eq(lstat(target, &st), 0);
  ck_assert(S_ISREG(st.st_mode));
  ck_assert_int_eq(lstat(link_dangling, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));

  /* A chain of relative links to an existing file, through the safetensors
   * writer (models, checkpoints): the file is replaced, both links kept. */
  ck_assert_int_eq(grad_png_write(real, px, 2, 2, 3, 6), GRAD_OK);
  grad__st_writer *w = NULL;
  ck_assert_int_eq(grad__st_writer_create(&w), GRAD_OK);
  float values[3] = {1, 2, 3};
  int64_t shape[1] = {3};
  ck_assert_int_eq(grad__st_writer_add(w, "t", 1, shape, values), GRAD_OK);
  grad_status saved = grad__st_writer_save(w, chain);
  grad__st_writer_free(w);
  ck_assert_int_eq(saved, GRAD_OK);
  char buf[256];
  read_link(chain, buf, sizeof buf);
  ck_assert_str_eq(buf, "rel.png");
  read_link(link_rel, buf, sizeof buf);
  ck_assert_str_eq(buf, "sub/real.png");
  grad_tensorfile *tf = NULL;
  ck_assert_int_eq(grad_tensorfile_open(real, &tf), GRAD_OK);
  ck_assert_uint_eq(grad_tensorfile_count(tf), 1);
  grad_tensorfile_free(tf);

  /* A loop is an error, not a hang or a replaced link. */
  char loop[512];
  snprintf(loop, sizeof loop, "%s/loop.png", dir);
  ck_assert_int_eq(symlink("loop.png", loop), 0);
  ck_assert_fails(grad_png_write(loop, px, 2, 2, 3, 6), GRAD_E_IO, loop);
  ck_assert_int_eq(lstat(loop, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));

  unlink(loop), unlink(chain), unlink(link_rel), unlink(link_dangling);
  unlink(real), unlink(target);
  rmdir(sub);
  rmdir(dir);
}
END_TEST

int main(void) {
  Suite *suite = suite_create("special_files");
  TCase *tc = tcase_create("special_files");
  tcase_set_timeout(tc, 20);
  tcase_add_test(tc, fifo_inputs_are_refused_without_blocking);
  tcase_add_test(tc, devices_are_refused_as_inputs);
  tcase_add_test(tc, fifo_outputs_never_block);
  tcase_add_test(tc, saves_through_symlinks_keep_the_link);
  suite_add_tcase(suite, tc);
  return test_run_suite(suite);
}
