/* grad version: the library's version. */
#define GRAD_EXPERIMENTAL /* uses grad_blas_core, grad_gemm_engine_name (not yet promised) */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *to) {
  fputs("Usage: grad version [-h]\n"
        "Print the version of the linked libgrad.\n", to);
}

int cmd_version(int argc, char **argv) {
  static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {0}};
  int opt;
  while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
    if (opt == 'h') {
      usage(stdout);
      return CLI_OK;
    }
    return cli_bad_option("version", opt, argv);
  }
  if (optind != argc) return cli_usage_error("version", "unexpected argument '%s'", argv[optind]);
  printf("libgrad %s (OpenBLAS kernels: %s, %d threads; matrix products on %s)\n",
         grad_version_string(), grad_blas_core(), grad_threads_get(), grad_gemm_engine_name());
  return CLI_OK;
}
