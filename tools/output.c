/* Escaping and machine-readable output shared by the commands. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
