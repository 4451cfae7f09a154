/* Re-running a program with the OpenBLAS kernels that fit the CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grad/grad.h>

#include "blas_kernels.h"

void cli_choose_blas_kernels(char **argv, int announce) {
  if (getenv("OPENBLAS_CORETYPE") || strcmp(grad_blas_core(), "Prescott") != 0) return;
  __builtin_cpu_init();
  const char *core = NULL;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    core = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    core = "Haswell";
  if (!core) return;
  if (announce)
    fprintf(stderr, "note: OpenBLAS chose its Prescott kernels on this CPU; running again with "
                    "OPENBLAS_CORETYPE=%s\n", core);
  setenv("OPENBLAS_CORETYPE", core, 1);
  execv("/proc/self/exe", argv); /* returns only on failure: go on as we are */
}
