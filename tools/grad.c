/* `grad`: train, score and inspect GRAD anomaly-detection models. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_kernels.h"
#include "cli.h"

static const cli_command commands[] = {
  {"demo", "synthesise data, train, evaluate: the built-in default job", cmd_demo},
  {"eval", "evaluate a model on MVTec-layout categories", cmd_eval},
  {"features", "write the backbone features of one image", cmd_features},
  {"info", "print the tensors and metadata of a weights or model file", cmd_info},
  {"score", "score images with a model", cmd_score},
  {"synth", "write a synthetic MVTec-layout data set", cmd_synth},
  {"train", "train a unified model on folders of normal images", cmd_train},
  {"version", "print the library version", cmd_version},
};
enum { COMMAND_COUNT = sizeof commands / sizeof commands[0] };

static void usage(FILE *to) {
  fputs("Usage: grad COMMAND [OPTIONS] [ARGS]\n"
        "GRAD unsupervised visual anomaly detection.\n\nCommands:\n", to);
  for (int i = 0; i < COMMAND_COUNT; i++)
    fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fputs("\nRun 'grad COMMAND --help' for the options of one command.\n", to);
}

const char *cli_program = "grad";

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) cli_program = argv[0];
  cli_choose_blas_kernels(argv, 0);
  opterr = 0; /* the commands report bad options themselves, once */
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return cli_close_stdout("--help", CLI_OK);
  }
  if (!strcmp(argv[1], "--version")) return cli_close_stdout("version", cmd_version(1, argv + 1));
  for (int i = 0; i < COMMAND_COUNT; i++)
    if (!strcmp(argv[1], commands[i].name))
      return cli_close_stdout(commands[i].name, commands[i].run(argc - 1, argv + 1));
  fprintf(stderr, "grad: unknown command '%s'\nTry 'grad --help'.\n", argv[1]);
  return CLI_USAGE;
}
