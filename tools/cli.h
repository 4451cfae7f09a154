/* Shared pieces of the `grad` command-line program. */
#ifndef GRAD_CLI_H
#define GRAD_CLI_H

#include <stdio.h>

#include <grad/grad.h>

/* GNU exit codes: success, failure, usage error. */
enum { CLI_OK = 0, CLI_FAILURE = 1, CLI_USAGE = 2 };

/* argv[0] of the program, for commands printed back to the user. */
extern const char *cli_program;

/* A subcommand: argv[0] is the subcommand's name. */
typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct cli_command {
  const char *name;
  const char *summary;
  cli_command_fn run;
} cli_command;

/* Prints "grad NAME: what: grad_last_error()" to stderr; returns CLI_FAILURE. */
int cli_fail(const char *command, grad_status status, const char *what);

/* Prints "grad NAME: message" and a hint to try --help; returns CLI_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The usage error of a getopt_long failure (opt '?' or ':'): names the
 * option once, unknown or missing its value. Use with opterr = 0. */
int cli_bad_option(const char *command, int opt, char **argv);

/* CLI_OK with the feature channels of arch + layers, or a usage error that
 * lists the valid architectures. */
int cli_check_arch(const char *command, const char *arch, unsigned layers, int *raw_channels);

/* Flushes stdout; a write error (full disk, closed pipe) is reported and
 * turns code into CLI_FAILURE. Called once, after every command. */
int cli_close_stdout(const char *command, int code);

/* Writes arg quoted for a POSIX shell when it needs it. */
void cli_put_shell_word(FILE *to, const char *arg);

/* 0 with a message naming option and path when path cannot be written:
 * its folder is missing or not writable, or path is a folder. Checked by
 * creating and removing a file next to it, as the atomic writer will. */
int cli_check_writable(const char *command, const char *option, const char *path);

/* Parses a whole decimal integer in [min, max]; false otherwise. */
int cli_parse_int(const char *text, long min, long max, long *out);
/* "fp32" or "bf16" into *out; 0 for anything else. */
int cli_parse_precision(const char *text, grad_precision *out);

/* Parses "2,3" into a stage bitmask (bit k = layerk, k in 1..4). */
int cli_parse_layers(const char *text, unsigned *mask);

int cmd_version(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_synth(int argc, char **argv);

#endif
