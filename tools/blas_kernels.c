/* OpenBLAS settings of the programs: its kernel set, and its thread count
 * before it starts (under resource limits). */
#define GRAD_EXPERIMENTAL /* uses grad_blas_core, grad_threads_explain (not yet promised) */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* ---- Threads under resource limits ----------------------------------------
 * OpenBLAS starts its threads while it is loaded, before main: each takes a
 * 128 MB buffer (retrying a failed malloc forever), and a thread it cannot
 * create makes it print "pthread_create failed" and kill the process with
 * SIGINT. This runs earlier still (.preinit_array: before any library's
 * initialiser) and, unless the user set OPENBLAS_NUM_THREADS, starts OpenBLAS
 * with only the threads the limits hold, saying why in words. */

static void *do_nothing(void *arg) { return arg; }

static int threads_for_memory(long cpus) {
  struct rlimit as, data;
  rlim_t limit = RLIM_INFINITY;
  if (getrlimit(RLIMIT_AS, &as) == 0) limit = as.rlim_cur;
  if (getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur < limit) limit = data.rlim_cur;
  if (limit == RLIM_INFINITY) return (int)cpus;
  /* Each thread: OpenBLAS's 128 MB buffer and as much again to work in. */
  const rlim_t per_thread = (rlim_t)256 << 20;
  rlim_t fit = limit > per_thread ? limit / per_thread : 1;
  int threads = fit < (rlim_t)cpus ? (int)fit : (int)cpus;
  if (threads < cpus)
    fprintf(stderr,
            "note: the memory limit (ulimit -v/-d: %llu MB) holds OpenBLAS buffers for %d of "
            "%ld threads (256 MB each); using %d\n",
            (unsigned long long)(limit >> 20), threads, cpus, threads);
  return threads;
}

static bool has_variable(char **envp, const char *name) {
  size_t n = strlen(name);
  for (; envp && *envp; envp++)
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return true;
  return false;
}

/* The environment is not yet libc's here (its initialiser, which runs
 * later, takes envp as it is), so a setenv would be lost: the program is
 * run again with the variable added instead, before OpenBLAS starts. */
static void fit_blas_threads_to_limits(int argc, char **argv, char **envp) {
  (void)argc;
  if (has_variable(envp, "OPENBLAS_NUM_THREADS") || has_variable(envp, "GOTO_NUM_THREADS") ||
      has_variable(envp, "OMP_NUM_THREADS"))
    return;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus <= 1) return;
  int threads = threads_for_memory(cpus);
  if (threads > 1) {
    pthread_t probe;
    int err = pthread_create(&probe, NULL, do_nothing, NULL);
    if (err == 0) {
      pthread_join(probe, NULL);
    } else {
      char why[512];
      grad_threads_explain(err, why, sizeof why);
      fprintf(stderr, "note: %s; running on one thread\n", why);
      threads = 1;
    }
  }
  if (threads >= cpus) return;
  size_t count = 0;
  while (envp && envp[count]) count++;
  char **env = malloc((count + 2) * sizeof *env);
  static char variable[48];
  if (!env) return;
  snprintf(variable, sizeof variable, "OPENBLAS_NUM_THREADS=%d", threads);
  for (size_t i = 0; i < count; i++) env[i] = envp[i];
  env[count] = variable;
  env[count + 1] = NULL;
  execve("/proc/self/exe", argv, env); /* returns only on failure: go on as we are */
  free(env);
}

__attribute__((section(".preinit_array"), used)) static void (*const fit_blas_threads_entry)(
    int, char **, char **) = fit_blas_threads_to_limits;
