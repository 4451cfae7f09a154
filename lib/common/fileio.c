/* Whole-file reads and atomic writes (temp file, fsync, rename). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

grad_status grad__read_file(const char *path, size_t max_bytes, unsigned char **data,
                            size_t *size) {
  *data = NULL;
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return grad__fail(GRAD_E_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return grad__fail(GRAD_E_IO, "%s: not a regular file", path);
  }
  if ((unsigned long long)st.st_size > max_bytes) {
    fclose(f);
    return grad__fail(GRAD_E_TOO_LARGE, "%s: %lld bytes is more than the limit of %zu", path,
                      (long long)st.st_size, max_bytes);
  }
  size_t n = (size_t)st.st_size;
  unsigned char *buf = grad__malloc(n + 1);
  if (!buf) {
    fclose(f);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  size_t got = fread(buf, 1, n, f);
  int read_error = ferror(f);
  fclose(f);
  if (got != n || read_error) {
    grad__free(buf);
    return grad__fail(GRAD_E_IO, "%s: read %zu of %zu bytes", path, got, n);
  }
  buf[n] = 0; /* convenient for text; not counted in size */
  *data = buf;
  *size = n;
  return GRAD_OK;
}

struct grad__atomic_file {
  FILE *stream;
  char *target;
  char *temp; /* NULL when writing in place to a target that is not a regular file */
  bool failed;
};

/*
 * A target that exists but is not a regular file (/dev/null, /dev/full, a
 * FIFO, or a symlink to one) is written in place: there is nothing to
 * replace atomically, and renaming a temporary file over it would replace
 * the device node or the link instead of writing to it.
 */
static grad_status open_in_place(const char *path, grad__atomic_file **out) {
  grad__atomic_file *file = grad__calloc(1, sizeof *file);
  char *target = grad__strdup(path);
  if (!file || !target) {
    grad__free(file), grad__free(target);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", path);
  }
  file->stream = fopen(path, "wb");
  if (!file->stream) {
    grad_status s = grad__fail(GRAD_E_IO, "%s: cannot open for writing: %s", path,
                               strerror(errno));
    grad__free(file), grad__free(target);
    return s;
  }
  file->target = target;
  *out = file;
  return GRAD_OK;
}

grad_status grad__atomic_open(const char *path, grad__atomic_file **out) {
  *out = NULL;
  if (!path || !*path) return grad__fail(GRAD_E_INVALID_ARG, "empty output path");
  struct stat st; /* a folder is left to fail at the rename */
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    return open_in_place(path, out);
  /* A symlink to a regular file: replace the file it points to, keep the link. */
  char *resolved = NULL;
  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) resolved = realpath(path, NULL);
  if (resolved) {
    grad_status s = grad__atomic_open(resolved, out);
    free(resolved);
    return s;
  }
  grad__atomic_file *file = grad__calloc(1, sizeof *file);
  char *dir_copy = grad__strdup(path), *base_copy = grad__strdup(path);
  size_t temp_len = strlen(path) + 16;
  char *temp = grad__malloc(temp_len);
  if (!file || !dir_copy || !base_copy || !temp) {
    grad__free(file), grad__free(dir_copy), grad__free(base_copy), grad__free(temp);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", path);
  }
  snprintf(temp, temp_len, "%s/.%s.XXXXXX", dirname(dir_copy), basename(base_copy));
  grad__free(dir_copy);
  grad__free(base_copy);
  int fd = mkstemp(temp);
  if (fd < 0) {
    grad_status s = grad__fail(GRAD_E_IO, "%s: cannot create a temporary file: %s", path,
                               strerror(errno));
    grad__free(temp), grad__free(file);
    return s;
  }
  fchmod(fd, 0644);
  file->stream = fdopen(fd, "wb");
  file->target = grad__strdup(path);
  file->temp = temp;
  if (!file->stream || !file->target) {
    if (!file->stream) close(fd);
    unlink(temp);
    if (file->stream) fclose(file->stream);
    grad__free(file->target), grad__free(temp), grad__free(file);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", path);
  }
  *out = file;
  return GRAD_OK;
}

FILE *grad__atomic_stream(grad__atomic_file *file) { return file->stream; }

grad_status grad__atomic_write(grad__atomic_file *file, const void *data, size_t size) {
  if (size && fwrite(data, 1, size, file->stream) != size) {
    file->failed = true;
    return grad__fail(GRAD_E_IO, "%s: write failed: %s", file->target, strerror(errno));
  }
  return GRAD_OK;
}

static void atomic_free(grad__atomic_file *file) {
  grad__free(file->target);
  grad__free(file->temp);
  grad__free(file);
}

void grad__atomic_abort(grad__atomic_file *file) {
  if (!file) return;
  if (file->stream) fclose(file->stream);
  if (file->temp) unlink(file->temp);
  atomic_free(file);
}

static void sync_folder_of(const char *path) {
  char *copy = grad__strdup(path);
  if (!copy) return;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd); /* best effort: the rename is already atomic */
    close(fd);
  }
  grad__free(copy);
}

grad_status grad__atomic_commit(grad__atomic_file *file) {
  int err = 0;
  if (file->failed || ferror(file->stream)) err = EIO;
  if (!err && fflush(file->stream) != 0) err = errno;
  /* Devices and pipes need not support fsync; written in place, they are done. */
  if (!err && file->temp && fsync(fileno(file->stream)) != 0) err = errno;
  if (fclose(file->stream) != 0 && !err) err = errno;
  file->stream = NULL;
  if (!err && file->temp && rename(file->temp, file->target) != 0) err = errno;
  if (err) {
    grad_status s = grad__fail(GRAD_E_IO, "%s: cannot save: %s", file->target, strerror(err));
    if (file->temp) unlink(file->temp);
    atomic_free(file);
    return s;
  }
  if (file->temp) sync_folder_of(file->target);
  atomic_free(file);
  return GRAD_OK;
}

grad_status grad__write_file_atomic(const char *path, const void *data, size_t size) {
  grad__atomic_file *file;
  grad_status s = grad__atomic_open(path, &file);
  if (s != GRAD_OK) return s;
  s = grad__atomic_write(file, data, size);
  if (s != GRAD_OK) {
    grad__atomic_abort(file);
    return s;
  }
  return grad__atomic_commit(file);
}
