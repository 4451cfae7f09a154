/* Escaping and machine-readable output shared by the commands. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"

void cli_put_escaped(FILE *to, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\n') fputs("\\n", to);
    else if (*p == '\t') fputs("\\t", to);
    else if (*p == '\r') fputs("\\r", to);
    else if (*p == '\\') fputs("\\\\", to);
    else if (*p < 0x20 || *p == 0x7f) fprintf(to, "\\x%02x", *p);
    else fputc(*p, to);
  }
}

void cli_put_csv_field(FILE *to, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, to);
    return;
  }
  fputc('"', to);
  for (; *s; s++) {
    if (*s == '"') fputc('"', to);
    fputc(*s, to);
  }
  fputc('"', to);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, at most U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *p) {
  if (p[0] < 0x80) return 1;
  size_t n = p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
             : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) return 0;
  if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) return 0;
  return n;
}

json_t *cli_json_string(const char *s) {
  size_t len = strlen(s);
  char *text = malloc(4 * len + 1); /* each byte becomes at most \xNN */
  if (!text) return NULL;
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t k = utf8_sequence(p);
    if (k) {
      memcpy(text + n, p, k);
      n += k;
      p += k;
    } else {
      n += (size_t)sprintf(text + n, "\\x%02x", *p++);
    }
  }
  json_t *value = json_stringn(text, n);
  free(text);
  return value;
}

json_t *cli_json_number(double value) {
  return isfinite(value) ? json_real(value) : json_null();
}

int cli_json_put_line(FILE *to, json_t *value) {
  if (!value) return 0;
  char *text = json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(9));
  json_decref(value);
  if (!text) return 0;
  int ok = fputs(text, to) >= 0 && fputc('\n', to) != EOF;
  free(text);
  return ok;
}

static int write_all(int fd, const char *data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    data += n;
    size -= (size_t)n;
  }
  return 1;
}

int cli_write_file(const char *command, const char *path, const char *data, size_t size) {
  char target[PATH_MAX];
  struct stat st;
  const char *where = path;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      fprintf(stderr, "grad %s: %s: is a folder\n", command, path);
      return 0;
    }
    /* a device or pipe: no rename possible, write in place (O_NONBLOCK: a
     * FIFO nobody reads fails rather than hangs) */
    int fd = open(path, O_WRONLY | O_NONBLOCK);
    int ok = fd >= 0 && fcntl(fd, F_SETFL, 0) == 0 && write_all(fd, data, size);
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && ok) ok = 0, saved = errno;
    if (!ok) fprintf(stderr, "grad %s: cannot write %s: %s\n", command, path, strerror(saved));
    return ok;
  }
  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && realpath(path, target)) where = target;
  char temp[PATH_MAX + 32];
  if (snprintf(temp, sizeof temp, "%s.tmp-XXXXXX", where) >= (int)sizeof temp) {
    fprintf(stderr, "grad %s: %s: path too long\n", command, path);
    return 0;
  }
  int fd = mkstemp(temp);
  if (fd < 0) {
    fprintf(stderr, "grad %s: cannot write %s: %s\n", command, path, strerror(errno));
    return 0;
  }
  mode_t mask = umask(0);
  umask(mask);
  int ok = fchmod(fd, 0666 & ~mask) == 0 && write_all(fd, data, size) && fsync(fd) == 0;
  int saved = errno;
  if (close(fd) != 0 && ok) ok = 0, saved = errno;
  if (ok && rename(temp, where) != 0) ok = 0, saved = errno;
  if (!ok) {
    unlink(temp);
    fprintf(stderr, "grad %s: cannot write %s: %s\n", command, path, strerror(saved));
  }
  return ok;
}
