/* What the benchmarks share (bench_common.h). */
#define _POSIX_C_SOURCE 200809L
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bench_load_average(void) {
  double load = -1.0;
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fscanf(f, "%lf", &load) != 1) load = -1.0;
    fclose(f);
  }
  return load;
}

/* Starts argv[0] with argv and waits for its "ready"; 0 when it cannot. */
int bench_side_start(bench_side *t, char *const argv[], const char *what) {
  if (access(argv[0], X_OK) != 0) {
    fprintf(stderr, "%s skipped: %s not found\n", what, argv[0]);
    return 0;
  }
  int down[2], up[2];
  if (pipe(down) || pipe(up)) return 0;
  fflush(NULL);
  t->pid = fork();
  if (t->pid < 0) return 0;
  if (t->pid == 0) {
    dup2(down[0], 0);
    dup2(up[1], 1);
    close(down[0]), close(down[1]), close(up[0]), close(up[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(down[0]);
  close(up[1]);
  t->to = fdopen(down[1], "w");
  t->from = fdopen(up[0], "r");
  char line[64];
  if (!t->to || !t->from || !fgets(line, sizeof line, t->from) || strncmp(line, "ready", 5)) {
    fprintf(stderr, "%s skipped: it did not start\n", what);
    return 0;
  }
  return 1;
}

/* Sends one request line and reads a number back; -1 on failure. */
double bench_side_ask(bench_side *t, const char *request) {
  char line[128];
  fprintf(t->to, "%s\n", request);
  fflush(t->to);
  if (!fgets(line, sizeof line, t->from)) return -1.0;
  char *end = NULL;
  double v = strtod(line, &end);
  return end == line ? -1.0 : v;
}

void bench_side_stop(bench_side *t) {
  if (t->to) fclose(t->to); /* end of input: the program exits */
  if (t->from) fclose(t->from);
  if (t->pid > 0) waitpid(t->pid, NULL, 0);
}

