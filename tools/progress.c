/* Progress display: a redrawn bar on a terminal, timed plain lines otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, const char *label, const char *unit) {
  memset(p, 0, sizeof *p);
  p->label = label;
  p->unit = unit;
  p->terminal = isatty(STDERR_FILENO);
  const char *interval = getenv("GRAD_PROGRESS_SECONDS");
  char *end = NULL;
  p->interval = interval ? strtod(interval, &end) : 2.0;
  if (!interval || end == interval || *end || !(p->interval >= 0)) p->interval = 2.0;
  p->first = -1;
}

static void format_duration(double seconds, char *buf, size_t size) {
  if (!(seconds >= 0) || seconds > 360000) {
    snprintf(buf, size, "--");
    return;
  }
  int s = (int)(seconds + 0.5);
  if (s >= 3600) snprintf(buf, size, "%dh%02dm", s / 3600, s / 60 % 60);
  else if (s >= 60) snprintf(buf, size, "%dm%02ds", s / 60, s % 60);
  else snprintf(buf, size, "%ds", s);
}

void cli_progress_update(cli_progress *p, double done, double total, const char *detail,
                         double eta_seconds) {
  double now = now_seconds();
  /* The rate counts from the first update: what came before it (feature
   * extraction, the epochs of a resumed run) is not this phase's work. */
  double rate = p->first < 0 || done <= p->first_done ? -1
                                                      : (done - p->first_done) / (now - p->first);
  if (p->first < 0) {
    p->first = now;
    p->first_done = done;
  }
  if (eta_seconds < 0 && rate > 0) eta_seconds = (total - done) / rate;
  int percent = total > 0 ? (int)(100.0 * done / total) : 0;
  char eta[32], speed[32];
  format_duration(eta_seconds, eta, sizeof eta);
  if (rate >= 0) snprintf(speed, sizeof speed, "%.1f %s/s", rate, p->unit);
  else snprintf(speed, sizeof speed, "-- %s/s", p->unit);
  if (p->terminal) {
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int filled = percent * WIDTH / 100;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %3d%% %s %s ETA %s\033[K", p->label, bar, percent, detail, speed,
            eta);
    fflush(stderr);
    p->drawn = 1;
  } else if (!p->lines || now - p->last_line >= p->interval || done >= total) {
    fprintf(stderr, "%s: %3d%% %s %s ETA %s\n", p->label, percent, detail, speed, eta);
    p->last_line = now;
    p->lines++;
  }
}

void cli_progress_finish(cli_progress *p) {
  if (p->terminal && p->drawn) fputc('\n', stderr);
  p->drawn = 0;
}
