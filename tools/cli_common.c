/* Error reporting and argument parsing shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cli_fail(const char *command, grad_status status, const char *what) {
  fprintf(stderr, "grad %s: %s: %s (%s)\n", command, what, grad_last_error(),
          grad_status_name(status));
  return CLI_FAILURE;
}

int cli_usage_error(const char *command, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fprintf(stderr, "grad %s: ", command);
  vfprintf(stderr, fmt, args);
  va_end(args);
  fprintf(stderr, "\nTry 'grad %s --help' for more information.\n", command);
  return CLI_USAGE;
}

int cli_parse_int(const char *text, long min, long max, long *out) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || end == text || *end != '\0' || value < min || value > max) return 0;
  *out = value;
  return 1;
}

int cli_parse_layers(const char *text, unsigned *mask) {
  unsigned bits = 0;
  for (const char *p = text; *p; p++) {
    if (*p >= '1' && *p <= '4' && (p[1] == ',' || p[1] == '\0')) {
      bits |= 1u << (*p - '0');
      if (p[1] == ',') p++;
    } else {
      return 0;
    }
  }
  if (!bits) return 0;
  *mask = bits;
  return 1;
}
