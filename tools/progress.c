/* Progress display: a redrawn bar on a terminal, plain lines otherwise. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"

void cli_progress_init(cli_progress *p, const char *label) {
  memset(p, 0, sizeof *p);
  p->label = label;
  p->terminal = isatty(STDERR_FILENO);
  p->last_percent = -1;
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
  int percent = total > 0 ? (int)(100.0 * done / total) : 0;
  char eta[32];
  format_duration(eta_seconds, eta, sizeof eta);
  if (p->terminal) {
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int filled = percent * WIDTH / 100;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %3d%% %s ETA %s\033[K", p->label, bar, percent, detail, eta);
    fflush(stderr);
    p->drawn = 1;
  } else if (percent / 10 != p->last_percent / 10 || done >= total) {
    /* Plain output (logs, pipes): a line every 10% and at the end. */
    if (percent != p->last_percent)
      fprintf(stderr, "%s: %3d%% %s ETA %s\n", p->label, percent, detail, eta);
  }
  p->last_percent = percent;
}

void cli_progress_finish(cli_progress *p) {
  if (p->terminal && p->drawn) fputc('\n', stderr);
  p->drawn = 0;
}
