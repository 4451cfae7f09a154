/* Progress display for long commands (train, eval, demo). */
#ifndef GRAD_CLI_PROGRESS_H
#define GRAD_CLI_PROGRESS_H

typedef struct cli_progress {
  const char *label;
  int terminal;      /* stderr is a terminal: redraw one line */
  int last_percent;
  int drawn;
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label);
/* detail: a short text such as "epoch 3/10 loss 0.0123". */
void cli_progress_update(cli_progress *p, double done, double total, const char *detail,
                         double eta_seconds);
/* Ends the redrawn line on a terminal. */
void cli_progress_finish(cli_progress *p);

#endif
