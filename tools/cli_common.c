/* Error reporting and argument parsing shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_fail(const char *command, grad_status status, const char *what) {
  /* The library's message usually names the file already: say it once. */
  const char *message = grad_last_error();
  if (what && strstr(message, what))
    fprintf(stderr, "grad %s: %s (%s)\n", command, message, grad_status_name(status));
  else
    fprintf(stderr, "grad %s: %s: %s (%s)\n", command, what, message, grad_status_name(status));
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
    if (*p >= '1' && *p <= '5' && (p[1] == ',' || p[1] == '\0')) {
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

int cli_bad_option(const char *command, int opt, char **argv) {
  /* A long option is the argument just read; a short one is optopt. */
  char name[64];
  const char *last = argv[optind - 1];
  if (!strncmp(last, "--", 2) || optopt <= 0 || optopt >= 128)
    snprintf(name, sizeof name, "%.*s", (int)strcspn(last, "="), last);
  else
    snprintf(name, sizeof name, "-%c", optopt);
  if (opt == ':') return cli_usage_error(command, "option '%s' needs a value", name);
  return cli_usage_error(command, "unknown option '%s'", name);
}

int cli_check_arch(const char *command, const char *arch, unsigned layers, int *raw_channels) {
  if (grad_backbone_arch_channels(arch, layers, raw_channels) == GRAD_OK) return CLI_OK;
  char names[640] = "";
  for (int i = 0; grad_backbone_arch_name(i); i++) {
    if (arch && !strcmp(arch, grad_backbone_arch_name(i))) /* known: the layers are wrong */
      return cli_usage_error(command, "--layers: %s", grad_last_error());
    if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
    strncat(names, grad_backbone_arch_name(i), sizeof names - strlen(names) - 1);
  }
  return cli_usage_error(command, "unknown --arch '%s' (valid: %s)", arch, names);
}

int cli_close_stdout(const char *command, int code) {
  /* Buffered results reach the file only now: a full disk or a closed
   * pipe must not pass for success. */
  errno = 0;
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "grad %s: cannot write the results to standard output: %s\n", command,
            errno ? strerror(errno) : "write error");
    return code == CLI_USAGE ? code : CLI_FAILURE;
  }
  return code;
}

void cli_put_shell_word(FILE *to, const char *arg) {
  if (*arg && strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                          "_-+=./,:@%") == strlen(arg)) {
    fputs(arg, to);
    return;
  }
  fputc('\'', to);
  for (; *arg; arg++) {
    if (*arg == '\'') fputs("'\\''", to);
    else fputc(*arg, to);
  }
  fputc('\'', to);
}

int cli_check_writable(const char *command, const char *option, const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    fprintf(stderr, "grad %s: %s %s: is a folder; give a file name\n", command, option, path);
    return 0;
  }
  const char *slash = strrchr(path, '/');
  char probe[4096];
  int n = slash ? (int)(slash - path) : 1;
  if (snprintf(probe, sizeof probe, "%.*s/.grad-write-check-XXXXXX", n ? n : 1,
               slash ? (n ? path : "/") : ".") >= (int)sizeof probe) {
    fprintf(stderr, "grad %s: %s %s: path too long\n", command, option, path);
    return 0;
  }
  int fd = mkstemp(probe);
  if (fd < 0) {
    fprintf(stderr, "grad %s: %s %s: cannot write there: %s\n", command, option, path,
            strerror(errno));
    return 0;
  }
  close(fd);
  unlink(probe);
  return 1;
}

int cli_parse_precision(const char *text, grad_precision *out) {
  if (strcmp(text, "fp32") == 0) *out = GRAD_PRECISION_FP32;
  else if (strcmp(text, "bf16") == 0) *out = GRAD_PRECISION_BF16;
  else return 0;
  return 1;
}
