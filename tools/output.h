/* Results for people and programs: escaped text, CSV and JSON (jansson). */
#ifndef GRAD_CLI_OUTPUT_H
#define GRAD_CLI_OUTPUT_H

#include <stdio.h>

#include <jansson.h>

/* Writes s with control characters and backslashes escaped (\n, \t, \\,
 * \xNN), so that any name stays on one line. */
void cli_put_escaped(FILE *to, const char *s);

/* Writes s as one CSV field (RFC 4180): quoted when it holds a comma, a
 * quote or a line break, with quotes doubled. */
void cli_put_csv_field(FILE *to, const char *s);

/* A JSON string for any byte string: valid UTF-8 is kept as it is; a byte
 * that is not part of valid UTF-8 becomes the text \xNN. NULL when out of
 * memory. */
json_t *cli_json_string(const char *s);

/* A JSON number, or null when value is not finite (JSON has no NaN). */
json_t *cli_json_number(double value);

/* Writes value compactly on one line to `to` and releases it; 0 when out
 * of memory or the write failed. */
int cli_json_put_line(FILE *to, json_t *value);

#endif

/* Writes size bytes to path atomically (a temporary file beside it, synced,
 * then renamed over it; a symbolic link keeps pointing at the new file). A
 * path that is not a regular file (/dev/stdout, a pipe) is written in
 * place. 0 with a message naming the path and the reason on failure; the
 * old file is then untouched. */
int cli_write_file(const char *command, const char *path, const char *data, size_t size);
