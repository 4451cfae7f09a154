/* Progress display for long commands (train, eval, demo). */
#ifndef GRAD_CLI_PROGRESS_H
#define GRAD_CLI_PROGRESS_H

typedef struct cli_progress {
  const char *label;
  const char *unit;  /* what done counts, for the rate: "steps", "images" */
  int terminal;      /* stderr is a terminal: redraw one line */
  double interval;   /* seconds between plain lines */
  double first, first_done, last_line;
  int drawn, lines;
} cli_progress;

/* On a terminal the line is redrawn; otherwise (logs, pipes) a plain line
 * is printed at the first update, then at least every interval seconds
 * while updates come (GRAD_PROGRESS_SECONDS, default 2), and at the end. */
void cli_progress_init(cli_progress *p, const char *label, const char *unit);
/* detail: a short text such as "epoch 3/10 loss 0.0123". eta_seconds < 0:
 * estimated here from the rate since the first update. */
void cli_progress_update(cli_progress *p, double done, double total, const char *detail,
                         double eta_seconds);
/* Ends the redrawn line on a terminal. */
void cli_progress_finish(cli_progress *p);

#endif
