/* grad score: score images with a trained model, in groups through
 * grad_model_score_batch, decoding the next group on a second thread. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "inputs.h"
#include "maps.h"
#include "output.h"

static void usage(FILE *to) {
  fputs("Usage: grad score -m MODEL [--csv | --json] [--maps DIR] [--list FILE] [-j N]\n"
        "                  [--precision fp32|bf16]\n"
        "                  [IMAGE | FOLDER | -]...\n"
        "Score images: files, folders (searched recursively for .png, .jpg, .jpeg), the\n"
        "paths listed in FILE (--list, one per line) or read from standard input (-).\n"
        "One line per image: its path, raw score, normalised score (the calibrated\n"
        "threshold is 0.5) and decision, tab-separated, with control characters in\n"
        "paths escaped (\\n, \\t, \\\\, \\xNN). A summary with images/s goes to stderr.\n\n"
        "  -m, --model FILE   the model file\n"
        "      --csv          CSV with a header: path,score,normalized,anomalous,status,message\n"
        "      --json         JSON lines: {\"path\", \"status\": \"ok\", \"score\", \"normalized\",\n"
        "                     \"anomalous\"}; a failed image is {\"path\", \"status\": the error\n"
        "                     name, \"message\"}; bytes that are not UTF-8 appear as \\xNN\n"
        "      --maps DIR     write DIR/NAME.png (heatmap overlay with the defect contour)\n"
        "                     and DIR/NAME_map.safetensors (the raw map); NAME is the\n"
        "                     image's path relative to the inputs' common folder, without\n"
        "                     extension (a/x.png and a/x.jpg become a/x_png, a/x_jpg); an\n"
        "                     output that would replace an input is refused\n"
        "      --list FILE    also score the paths listed in FILE (- for stdin)\n"
        "  -j, --threads N    threads (default: all cores)\n"
        "      --precision P  fp32 (default) or bf16 (CPUs with native bf16)\n"
        "  -h, --help         show this help\n"
        "Exit status: 0 every image scored and good; 3 every image scored and at least\n"
        "one anomalous; 1 at least one image could not be scored (or another error);\n"
        "2 usage error.\n",
        to);
}

enum { FORMAT_TEXT, FORMAT_CSV, FORMAT_JSON };
enum { CLI_ANOMALOUS = 3 };

/* One decoded image handed from the decoding thread to the scorer. */
typedef struct slot {
  grad_image *image;
  grad_status status;
  char *message; /* the decoder's grad_last_error() when status != GRAD_OK */
} slot;

/* Images go through the model in groups of BATCH (grad_model_score_batch
 * is faster than single calls); the decoder works one group ahead. */
enum { BATCH = 8, QUEUE = 2 * BATCH };

typedef struct pipeline {
  const cli_paths *inputs;
  pthread_mutex_t lock;
  pthread_cond_t changed;
  slot ring[QUEUE];
  size_t produced, consumed;
  int stop;
} pipeline;

static void *decode_all(void *arg) {
  pipeline *p = arg;
  for (size_t i = 0; i < p->inputs->count; i++) {
    pthread_mutex_lock(&p->lock);
    while (p->produced - p->consumed == QUEUE && !p->stop) pthread_cond_wait(&p->changed, &p->lock);
    int stop = p->stop;
    pthread_mutex_unlock(&p->lock);
    if (stop) break;
    slot s = {0};
    s.status = grad_image_load(p->inputs->paths[i], &s.image);
    if (s.status != GRAD_OK) s.message = strdup(grad_last_error());
    pthread_mutex_lock(&p->lock);
    p->ring[p->produced % QUEUE] = s;
    p->produced++;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
  }
  return NULL;
}

static slot next_image(pipeline *p) {
  pthread_mutex_lock(&p->lock);
  while (p->produced == p->consumed) pthread_cond_wait(&p->changed, &p->lock);
  slot s = p->ring[p->consumed % QUEUE];
  p->consumed++;
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->lock);
  return s;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_result(int format, const char *path, const grad_result *r) {
  double score = grad_result_score(r), normalized = grad_result_normalized_score(r);
  int anomalous = grad_result_is_anomalous(r);
  if (format == FORMAT_JSON) {
    json_t *o = json_object();
    json_object_set_new(o, "path", cli_json_string(path));
    json_object_set_new(o, "status", json_string("ok"));
    json_object_set_new(o, "score", cli_json_number(score));
    json_object_set_new(o, "normalized", cli_json_number(normalized));
    json_object_set_new(o, "anomalous", json_boolean(anomalous));
    cli_json_put_line(stdout, o);
  } else if (format == FORMAT_CSV) {
    cli_put_csv_field(stdout, path);
    printf(",%.6g,%.4f,%d,ok,\n", score, normalized, anomalous);
  } else {
    cli_put_escaped(stdout, path);
    printf("\t%.6g\t%.4f\t%s\n", score, normalized, anomalous ? "anomalous" : "good");
  }
}

/* A failed image: on stderr always, and in the results for programs. */
static void print_failure(int format, const char *path, grad_status status, const char *message) {
  fputs("grad score: ", stderr);
  if (!strstr(message, path)) {
    cli_put_escaped(stderr, path);
    fputs(": ", stderr);
  }
  cli_put_escaped(stderr, message);
  fprintf(stderr, " (%s)\n", grad_status_name(status));
  if (format == FORMAT_JSON) {
    json_t *o = json_object();
    json_object_set_new(o, "path", cli_json_string(path));
    json_object_set_new(o, "status", json_string(grad_status_name(status)));
    json_object_set_new(o, "message", cli_json_string(message));
    cli_json_put_line(stdout, o);
  } else if (format == FORMAT_CSV) {
    cli_put_csv_field(stdout, path);
    printf(",,,,%s,", grad_status_name(status));
    cli_put_csv_field(stdout, message);
    putchar('\n');
  }
}

/* Writes the overlay and raw map of one image under dir/name. */
static grad_status write_maps(const grad_model *model, const grad_image *image,
                              const grad_result *result, const char *dir, const char *name) {
  char folder[4096];
  const char *slash = strrchr(name, '/');
  if (slash) {
    snprintf(folder, sizeof folder, "%s/%.*s", dir, (int)(slash - name), name);
    if (!cli_make_dirs(folder)) return GRAD_E_IO;
  }
  return cli_write_maps(model, image, result, dir, name);
}

static int score_all(const grad_model *model, grad_context *ctx, const cli_paths *inputs,
                     int format, const char *maps, char **names) {
  pipeline p = {.inputs = inputs};
  pthread_mutex_init(&p.lock, NULL);
  pthread_cond_init(&p.changed, NULL);
  pthread_t decoder;
  if (pthread_create(&decoder, NULL, decode_all, &p) != 0) {
    fprintf(stderr, "grad score: cannot start the decoding thread (too many processes or "
            "threads, or too little memory)\n");
    return CLI_FAILURE;
  }
  if (format == FORMAT_CSV) puts("path,score,normalized,anomalous,status,message");
  size_t failed = 0, anomalous = 0;
  double start = now_seconds();
  for (size_t first = 0; first < inputs->count; first += BATCH) {
    size_t n = inputs->count - first < BATCH ? inputs->count - first : BATCH, m = 0;
    slot group[BATCH];
    const grad_image *images[BATCH];
    size_t member[BATCH]; /* group index of each decoded image */
    grad_result *results[BATCH] = {0}, *scored[BATCH] = {0};
    grad_status status[BATCH];
    char *message[BATCH] = {0};
    for (size_t k = 0; k < n; k++) {
      group[k] = next_image(&p);
      status[k] = group[k].status;
      message[k] = group[k].message;
      if (status[k] == GRAD_OK) images[m] = group[k].image, member[m++] = k;
    }
    if (m && grad_model_score_batch(model, ctx, images, m, scored) == GRAD_OK) {
      for (size_t j = 0; j < m; j++) results[member[j]] = scored[j];
    } else {
      /* one at a time, so that each failure is told apart */
      for (size_t j = 0; j < m; j++) {
        size_t k = member[j];
        status[k] = grad_model_score(model, ctx, images[j], &results[k]);
        if (status[k] != GRAD_OK) message[k] = strdup(grad_last_error());
      }
    }
    for (size_t k = 0; k < n; k++) {
      const char *path = inputs->paths[first + k];
      if (status[k] == GRAD_OK && maps && names[first + k]) {
        status[k] = write_maps(model, group[k].image, results[k], maps, names[first + k]);
        if (status[k] != GRAD_OK) message[k] = strdup(grad_last_error());
      }
      if (status[k] == GRAD_OK) {
        print_result(format, path, results[k]);
        anomalous += grad_result_is_anomalous(results[k]) != 0;
      } else {
        print_failure(format, path, status[k], message[k] ? message[k] : grad_last_error());
        failed++;
      }
      grad_result_free(results[k]);
      grad_image_free(group[k].image);
      free(message[k]);
    }
  }
  double seconds = now_seconds() - start;
  pthread_join(decoder, NULL);
  pthread_cond_destroy(&p.changed);
  pthread_mutex_destroy(&p.lock);
  size_t scored = inputs->count - failed;
  fprintf(stderr, "grad score: %zu images scored in %.2f s (%.1f images/s): %zu anomalous, "
          "%zu failed\n", scored, seconds, seconds > 0 ? scored / seconds : 0.0, anomalous, failed);
  return failed ? CLI_FAILURE : anomalous ? CLI_ANOMALOUS : CLI_OK;
}

int cmd_score(int argc, char **argv) {
  enum { OPT_MAPS = 256, OPT_JSON, OPT_CSV, OPT_LIST, OPT_PRECISION };
  static const struct option options[] = {
    {"model", required_argument, NULL, 'm'}, {"maps", required_argument, NULL, OPT_MAPS},
    {"json", no_argument, NULL, OPT_JSON}, {"csv", no_argument, NULL, OPT_CSV},
    {"list", required_argument, NULL, OPT_LIST}, {"threads", required_argument, NULL, 'j'},
    {"precision", required_argument, NULL, OPT_PRECISION}, {"help", no_argument, NULL, 'h'}, {0}};
  const char *model_path = NULL, *maps = NULL, *lists[16];
  int format = FORMAT_TEXT, formats = 0, list_count = 0, opt;
  long value;
  grad_precision precision = GRAD_PRECISION_FP32;
  while ((opt = getopt_long(argc, argv, ":m:j:h", options, NULL)) != -1) {
    switch (opt) {
    case 'm': model_path = optarg; break;
    case OPT_MAPS: maps = optarg; break;
    case OPT_JSON: format = FORMAT_JSON, formats++; break;
    case OPT_CSV: format = FORMAT_CSV, formats++; break;
    case OPT_LIST:
      if (list_count == 16) return cli_usage_error("score", "at most 16 --list files");
      lists[list_count++] = optarg;
      break;
    case OPT_PRECISION:
      if (!cli_parse_precision(optarg, &precision))
        return cli_usage_error("score", "--precision must be fp32 or bf16");
      break;
    case 'j':
      if (!cli_parse_int(optarg, 1, 1024, &value))
        return cli_usage_error("score", "--threads must be in 1..1024");
      grad_threads_set((int)value);
      break;
    case 'h': usage(stdout); return CLI_OK;
    default: return cli_bad_option("score", opt, argv);
    }
  }
  if (!model_path) return cli_usage_error("score", "-m MODEL is required");
  if (formats > 1) return cli_usage_error("score", "--csv and --json exclude each other");
  if (optind == argc && !list_count)
    return cli_usage_error("score", "no IMAGE, FOLDER, --list FILE or - given");

  cli_paths inputs = {0};
  int ok = 1;
  for (int i = optind; ok && i < argc; i++) ok = cli_paths_add_argument(&inputs, argv[i], "score");
  for (int i = 0; ok && i < list_count; i++) ok = cli_paths_add_list_file(&inputs, lists[i], "score");
  if (ok && !inputs.count) {
    fprintf(stderr, "grad score: no images to score\n");
    ok = 0;
  }
  if (ok && maps && !cli_make_dirs(maps)) {
    perror(maps);
    ok = 0;
  }
  char **names = NULL;
  if (ok && maps) ok = cli_map_names(&inputs, maps, "score", &names);
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  int code = CLI_FAILURE;
  if (ok) {
    grad_status s = grad_model_load(model_path, &model);
    if (s != GRAD_OK) cli_fail("score", s, "cannot load the model");
    else if ((s = grad_model_compute_set(model, GRAD_ENGINE_AUTO, precision)) != GRAD_OK)
      cli_fail("score", s, "cannot compute in that precision");
    else if ((s = grad_context_create(model, &ctx)) != GRAD_OK)
      cli_fail("score", s, "cannot create a scoring context");
    else code = score_all(model, ctx, &inputs, format, maps, names);
  }
  grad_context_free(ctx);
  grad_model_free(model);
  cli_map_names_free(names, inputs.count);
  cli_paths_free(&inputs);
  return code;
}
