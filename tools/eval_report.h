/* Evaluating a model on one category or a folder of them, with a table. */
#ifndef GRAD_CLI_EVAL_REPORT_H
#define GRAD_CLI_EVAL_REPORT_H

#include <grad/grad.h>

/*
 * Evaluates every MVTec-layout category under root (or root itself when it
 * is one), prints the table and the mean row to stdout, writes overlays to
 * maps_dir/CATEGORY/DEFECT/ when maps_dir is set and a JSON report to
 * json_path when set. Returns a CLI exit code; `command` prefixes errors.
 */
int cli_evaluate(const char *command, const grad_model *model, const char *root,
                 const char *maps_dir, const char *json_path);

#endif
