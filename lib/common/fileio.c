/* Whole-file reads and atomic writes (temp file, fsync, rename). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

static const char *kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

/*
 * O_NONBLOCK makes the open itself return at once on a FIFO with no writer
 * (or a device that would wait); the type is then checked on the open
 * descriptor, so nothing is read from anything but a regular file.
 */
grad_status grad__open_regular(const char *path, int *fd_out, size_t *size_out) {
  *fd_out = -1;
  *size_out = 0;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return grad__fail(GRAD_E_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return grad__fail(GRAD_E_IO, "%s: cannot stat: %s", path, strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return grad__fail(GRAD_E_IO, "%s: is %s, not a regular file", path, kind_of(st.st_mode));
  }
  if ((uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    return grad__fail(GRAD_E_TOO_LARGE, "%s: %lld bytes do not fit in memory", path,
                      (long long)st.st_size);
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  *fd_out = fd;
  *size_out = (size_t)st.st_size;
  return GRAD_OK;
}

grad_status grad__read_file(const char *path, size_t max_bytes, unsigned char **data,
                            size_t *size) {
  *data = NULL;
  *size = 0;
  int fd;
  size_t n;
  grad_status s = grad__open_regular(path, &fd, &n);
  if (s != GRAD_OK) return s;
  if (n > max_bytes) {
    close(fd);
    return grad__fail(GRAD_E_TOO_LARGE, "%s: %zu bytes is more than the limit of %zu", path, n,
                      max_bytes);
  }
  unsigned char *buf = grad__malloc(n + 1);
  if (!buf) {
    close(fd);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  size_t got = 0;
  int err = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      err = r < 0 ? errno : 0;
      break;
    }
    got += (size_t)r;
  }
  close(fd);
  if (got != n) {
    grad__free(buf);
    return grad__fail(GRAD_E_IO, "%s: read %zu of %zu bytes%s%s", path, got, n,
                      err ? ": " : " (the file shrank)", err ? strerror(err) : "");
  }
  buf[n] = 0; /* convenient for text; not counted in size */
  *data = buf;
  *size = n;
  return GRAD_OK;
}

struct grad__atomic_file {
  FILE *stream;
  char *name;   /* the path the caller gave, for messages */
  char *target; /* what is replaced: name with its symlinks followed */
  char *temp;   /* NULL when writing in place to a target that is not a regular file */
  bool failed;
};

static void atomic_free(grad__atomic_file *file) {
  grad__free(file->name);
  grad__free(file->target);
  grad__free(file->temp);
  grad__free(file);
}

/*
 * path with its symlinks followed, also a dangling one (the file it names
 * is created), so that a save replaces the file a link points to and keeps
 * the link. Links are resolved one level at a time, relative ones against
 * the folder of the link. GRAD_E_IO on a loop, GRAD_E_NOMEM.
 */
static grad_status follow_links(const char *path, char **out) {
  char *current = grad__strdup(path);
  *out = NULL;
  for (int depth = 0; current && depth < 40; depth++) {
    struct stat st;
    char link[4096];
    ssize_t n = -1;
    if (lstat(current, &st) == 0 && S_ISLNK(st.st_mode))
      n = readlink(current, link, sizeof link - 1);
    if (n < 0) { /* not a link (or unreadable: the open reports it) */
      *out = current;
      return GRAD_OK;
    }
    link[n] = 0;
    char *next;
    if (link[0] == '/') {
      next = grad__strdup(link);
    } else {
      char *dir_copy = grad__strdup(current);
      const char *dir = dir_copy ? dirname(dir_copy) : NULL;
      size_t len = dir ? strlen(dir) + strlen(link) + 2 : 0;
      next = dir ? grad__malloc(len) : NULL;
      if (next) snprintf(next, len, "%s/%s", dir, link);
      grad__free(dir_copy);
    }
    grad__free(current);
    current = next;
  }
  if (!current) return grad__fail(GRAD_E_NOMEM, "%s: out of memory following symlinks", path);
  grad__free(current);
  return grad__fail(GRAD_E_IO, "%s: too many levels of symbolic links", path);
}

/*
 * A target that exists but is not a regular file is written in place:
 * there is nothing to replace atomically, and renaming a temporary file
 * over it would replace the device node instead of writing to it. The open
 * never blocks: a FIFO that nobody reads is refused (ENXIO), so is a block
 * device or a socket. Character devices (/dev/null, /dev/full, a terminal)
 * and FIFOs with a reader are written.
 */
static grad_status open_in_place(grad__atomic_file *file, mode_t mode) {
  if (S_ISBLK(mode) || S_ISSOCK(mode))
    return grad__fail(GRAD_E_IO, "%s: is %s; refusing to write to it", file->name,
                      kind_of(mode));
  int fd = open(file->target, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0 && errno == ENXIO && S_ISFIFO(mode))
    return grad__fail(GRAD_E_IO, "%s: is a FIFO (named pipe) that no process reads", file->name);
  if (fd < 0)
    return grad__fail(GRAD_E_IO, "%s: cannot open for writing: %s", file->name, strerror(errno));
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  file->stream = fdopen(fd, "wb");
  if (!file->stream) {
    close(fd);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", file->name);
  }
  return GRAD_OK;
}

static grad_status open_temporary(grad__atomic_file *file) {
  const char *path = file->target;
  char *dir_copy = grad__strdup(path), *base_copy = grad__strdup(path);
  size_t temp_len = strlen(path) + 16;
  file->temp = grad__malloc(temp_len);
  if (!dir_copy || !base_copy || !file->temp) {
    grad__free(dir_copy), grad__free(base_copy);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", file->name);
  }
  snprintf(file->temp, temp_len, "%s/.%s.XXXXXX", dirname(dir_copy), basename(base_copy));
  grad__free(dir_copy);
  grad__free(base_copy);
  int fd = mkstemp(file->temp);
  if (fd < 0) {
    grad_status s = grad__fail(GRAD_E_IO, "%s: cannot create a temporary file: %s", file->name,
                               strerror(errno));
    grad__free(file->temp);
    file->temp = NULL;
    return s;
  }
  fchmod(fd, 0644);
  file->stream = fdopen(fd, "wb");
  if (!file->stream) {
    close(fd);
    unlink(file->temp);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", file->name);
  }
  return GRAD_OK;
}

grad_status grad__atomic_open(const char *path, grad__atomic_file **out) {
  *out = NULL;
  if (!path || !*path) return grad__fail(GRAD_E_INVALID_ARG, "empty output path");
  grad__atomic_file *file = grad__calloc(1, sizeof *file);
  if (!file || !(file->name = grad__strdup(path))) {
    grad__free(file);
    return grad__fail(GRAD_E_NOMEM, "%s: out of memory", path);
  }
  grad_status s = follow_links(path, &file->target);
  struct stat st; /* a folder is left to fail at the rename */
  bool special = s == GRAD_OK && stat(file->target, &st) == 0 && !S_ISREG(st.st_mode) &&
                 !S_ISDIR(st.st_mode);
  if (s == GRAD_OK) s = special ? open_in_place(file, st.st_mode) : open_temporary(file);
  if (s != GRAD_OK) {
    atomic_free(file);
    return s;
  }
  *out = file;
  return GRAD_OK;
}

FILE *grad__atomic_stream(grad__atomic_file *file) { return file->stream; }

grad_status grad__atomic_write(grad__atomic_file *file, const void *data, size_t size) {
  if (size && fwrite(data, 1, size, file->stream) != size) {
    file->failed = true;
    return grad__fail(GRAD_E_IO, "%s: write failed: %s", file->name, strerror(errno));
  }
  return GRAD_OK;
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
    grad_status s = grad__fail(GRAD_E_IO, "%s: cannot save: %s", file->name, strerror(err));
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
