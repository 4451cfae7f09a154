/* `grad`: train, score and inspect GRAD anomaly-detection models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/*
 * OpenBLAS 0.3.21 does not recognise some recent CPUs and falls back to its
 * generic "Prescott" kernels, 4x slower here. When it did, and the CPU has
 * AVX-512 or AVX2, run again once with OPENBLAS_CORETYPE naming the kernel
 * set that fits (OpenBLAS reads it only at start-up). A user's own
 * OPENBLAS_CORETYPE is always kept.
 */
static void choose_blas_kernels(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || strcmp(grad_blas_core(), "Prescott") != 0) return;
  __builtin_cpu_init();
  const char *core = NULL;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    core = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    core = "Haswell";
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  execv("/proc/self/exe", argv); /* returns only on failure: go on as we are */
}

int main(int argc, char **argv) {
  choose_blas_kernels(argv);
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return CLI_OK;
  }
  if (!strcmp(argv[1], "--version")) return cmd_version(1, argv + 1);
  for (int i = 0; i < COMMAND_COUNT; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "grad: unknown command '%s'\nTry 'grad --help'.\n", argv[1]);
  return CLI_USAGE;
}
