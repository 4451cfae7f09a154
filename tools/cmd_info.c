/* grad info: the metadata and tensors of a safetensors weights or model file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "output.h"

static void usage(FILE *to) {
  fputs("Usage: grad info [-h] [--json] FILE\n"
        "Print the metadata (key = value) and the tensors (name, dtype, shape,\n"
        "bytes) of a safetensors weights or model file, with totals. A model's\n"
        "provenance (library version, date, options, epochs, seed, training\n"
        "images and folders) is the metadata named provenance.*.\n"
        "The whole header is validated first: a corrupt file exits with status 1\n"
        "and a message naming the byte offset, tensor or field at fault.\n\n"
        "  --json      one JSON object instead: file, bytes, metadata, provenance\n"
        "              (its values parsed: numbers, lists and options as JSON),\n"
        "              tensors\n"
        "  -h, --help  show this help and exit\n", to);
}

/* Metadata values may hold anything (JSON configurations, text): control
 * characters are escaped so that each entry stays on one line. */
static void print_escaped(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\n') fputs("\\n", stdout);
    else if (*p == '\t') fputs("\\t", stdout);
    else if (*p == '\\') fputs("\\\\", stdout);
    else if (*p < 0x20 || *p == 0x7f) printf("\\x%02x", *p);
    else putchar(*p);
  }
}

/* Writes "[64, 3, 7, 7]" ("[]" for a scalar) into buf, truncating to size. */
static void format_shape(const grad_tensorfile *tf, size_t index, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int d = 0; d < grad_tensorfile_ndim(tf, index) && used < size; d++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", d ? ", " : "",
                             (long long)grad_tensorfile_dim(tf, index, d));
  if (used < size) snprintf(buf + used, size - used, "]");
}

static void print_file(const char *path, const grad_tensorfile *tf) {
  size_t count = grad_tensorfile_count(tf), meta_count = grad_tensorfile_meta_count(tf);
  size_t header = grad_tensorfile_header_bytes(tf), total = grad_tensorfile_bytes(tf);
  printf("file: %s\n", path);
  printf("size: %zu bytes (8-byte length, %zu-byte JSON header, %zu bytes of data)\n", total,
         header, total - 8 - header);
  printf("\nmetadata (%zu %s):\n", meta_count, meta_count == 1 ? "entry" : "entries");
  for (size_t i = 0; i < meta_count; i++) {
    fputs("  ", stdout);
    print_escaped(grad_tensorfile_meta_key(tf, i));
    fputs(" = ", stdout);
    print_escaped(grad_tensorfile_meta_value(tf, i));
    putchar('\n');
  }

  int name_width = 4, shape_width = 5;
  char shape[200];
  for (size_t i = 0; i < count; i++) {
    int n = (int)strlen(grad_tensorfile_name(tf, i));
    if (n > name_width) name_width = n > 60 ? 60 : n;
    format_shape(tf, i, shape, sizeof shape);
    n = (int)strlen(shape);
    if (n > shape_width) shape_width = n;
  }
  printf("\ntensors (%zu):\n", count);
  printf("  %-*s  %-7s  %-*s  %12s\n", name_width, "name", "dtype", shape_width, "shape", "bytes");
  static const char *const names[4] = {"F32", "F16", "BF16", "other"};
  size_t elements = 0, bytes = 0, by_dtype[4] = {0};
  for (size_t i = 0; i < count; i++) {
    const char *dtype = grad_tensorfile_dtype_name(tf, i);
    size_t nbytes = grad_tensorfile_tensor_bytes(tf, i);
    format_shape(tf, i, shape, sizeof shape);
    printf("  %-*s  %-7s  %-*s  %12zu\n", name_width, grad_tensorfile_name(tf, i), dtype,
           shape_width, shape, nbytes);
    elements += grad_tensorfile_elements(tf, i); /* cannot overflow: the tensors tile the file */
    bytes += nbytes;
    int d = 0;
    while (d < 3 && strcmp(dtype, names[d]) != 0) d++;
    by_dtype[d]++;
  }
  printf("\ntotal: %zu tensors, %zu elements, %zu bytes (%.2f MiB)", count, elements, bytes,
         (double)bytes / (1024.0 * 1024.0));
  const char *sep = "; ";
  for (int d = 0; d < 4; d++) {
    if (!by_dtype[d]) continue;
    printf("%s%zu %s", sep, by_dtype[d], names[d]);
    sep = ", ";
  }
  putchar('\n');
}

/* A provenance value as JSON: numbers, lists and objects parsed, the rest text. */
static json_t *provenance_value(const char *text) {
  json_t *parsed = json_loads(text, JSON_DECODE_ANY, NULL);
  if (parsed && (json_is_object(parsed) || json_is_array(parsed) || json_is_number(parsed)))
    return parsed;
  json_decref(parsed);
  return cli_json_string(text);
}

static int print_json(const char *path, const grad_tensorfile *tf) {
  json_t *metadata = json_object(), *provenance = json_object(), *tensors = json_array();
  for (size_t i = 0; i < grad_tensorfile_meta_count(tf); i++) {
    const char *key = grad_tensorfile_meta_key(tf, i), *value = grad_tensorfile_meta_value(tf, i);
    json_object_set_new(metadata, key, cli_json_string(value));
    if (!strncmp(key, "provenance.", 11))
      json_object_set_new(provenance, key + 11, provenance_value(value));
  }
  for (size_t i = 0; i < grad_tensorfile_count(tf); i++) {
    json_t *shape = json_array();
    for (int d = 0; d < grad_tensorfile_ndim(tf, i); d++)
      json_array_append_new(shape, json_integer((json_int_t)grad_tensorfile_dim(tf, i, d)));
    json_int_t bytes = (json_int_t)grad_tensorfile_tensor_bytes(tf, i);
    json_array_append_new(tensors, json_pack("{s:o, s:s, s:o, s:I}", "name",
                                             cli_json_string(grad_tensorfile_name(tf, i)),
                                             "dtype", grad_tensorfile_dtype_name(tf, i),
                                             "shape", shape, "bytes", bytes));
  }
  json_t *root = json_pack("{s:o, s:I, s:o, s:o, s:o}", "file", cli_json_string(path),
                           "bytes", (json_int_t)grad_tensorfile_bytes(tf), "metadata", metadata,
                           "provenance", provenance, "tensors", tensors);
  return cli_json_put_line(stdout, root);
}

int cmd_info(int argc, char **argv) {
  static const struct option options[] = {{"help", no_argument, NULL, 'h'},
                                          {"json", no_argument, NULL, 'j'}, {0}};
  int opt, json = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
    if (opt == 'h') {
      usage(stdout);
      return CLI_OK;
    }
    if (opt == 'j') {
      json = 1;
      continue;
    }
    return cli_bad_option("info", opt, argv);
  }
  if (optind == argc) return cli_usage_error("info", "missing FILE");
  if (argc - optind > 1) return cli_usage_error("info", "unexpected argument '%s'", argv[optind + 1]);
  grad_tensorfile *tf = NULL;
  grad_status s = grad_tensorfile_open(argv[optind], &tf);
  if (s != GRAD_OK) return cli_fail("info", s, "cannot read the file");
  int written = 1;
  if (json) written = print_json(argv[optind], tf);
  else print_file(argv[optind], tf);
  grad_tensorfile_free(tf);
  if (!written) {
    fputs("grad info: cannot write the JSON report (out of memory or a write error)\n", stderr);
    return CLI_FAILURE;
  }
  return CLI_OK;
}
