/* grad score: score images with a trained model. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "maps.h"

static void usage(FILE *to) {
  fputs("Usage: grad score -m MODEL [--maps DIR] [--json] [-j N] IMAGE...\n"
        "Score each image: one line per image with its path, raw score, normalised\n"
        "score (the calibrated threshold is 0.5) and decision, or one JSON object\n"
        "per line with --json.\n\n"
        "  -m, --model FILE   the model file\n"
        "      --maps DIR     write DIR/NAME.png (heatmap overlay with the defect\n"
        "                     contour) and DIR/NAME_map.safetensors (the raw map)\n"
        "      --json         JSON lines instead of text\n"
        "  -j, --threads N    threads (default: all cores)\n"
        "  -h, --help         show this help\n"
        "Exit status: 0 when every image was scored, 1 when one failed.\n",
        to);
}

/* Writes s as a JSON string (quotes and escapes). */
static void print_json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

int cmd_score(int argc, char **argv) {
  static const struct option options[] = {
    {"model", required_argument, NULL, 'm'}, {"maps", required_argument, NULL, 'M'},
    {"json", no_argument, NULL, 'J'}, {"threads", required_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'}, {0}};
  const char *model_path = NULL, *maps = NULL;
  int json = 0, opt;
  long value;
  while ((opt = getopt_long(argc, argv, ":m:j:h", options, NULL)) != -1) {
    switch (opt) {
    case 'm': model_path = optarg; break;
    case 'M': maps = optarg; break;
    case 'J': json = 1; break;
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
  if (optind == argc) return cli_usage_error("score", "no IMAGE given");
  if (maps && !cli_make_dirs(maps)) {
    perror(maps);
    return CLI_FAILURE;
  }
  grad_model *model = NULL;
  grad_context *ctx = NULL;
  grad_status s = grad_model_load(model_path, &model);
  if (s != GRAD_OK) return cli_fail("score", s, "cannot load the model");
  s = grad_context_create(model, &ctx);
  if (s != GRAD_OK) {
    grad_model_free(model);
    return cli_fail("score", s, "cannot create a scoring context");
  }
  int failures = 0;
  for (int i = optind; i < argc; i++) {
    grad_image *image = NULL;
    grad_result *result = NULL;
    s = grad_image_load(argv[i], &image);
    if (s == GRAD_OK) s = grad_model_score(model, ctx, image, &result);
    if (s == GRAD_OK && maps) {
      char stem[1024];
      cli_stem(argv[i], stem, sizeof stem);
      s = cli_write_maps(model, image, result, maps, stem);
    }
    if (s != GRAD_OK) {
      cli_fail("score", s, argv[i]);
      failures++;
    } else if (json) {
      printf("{\"path\": ");
      print_json_string(argv[i]);
      printf(", \"score\": %.6g, \"normalized\": %.4f, \"anomalous\": %s}\n",
             grad_result_score(result), grad_result_normalized_score(result),
             grad_result_is_anomalous(result) ? "true" : "false");
    } else {
      printf("%s\t%.6g\t%.4f\t%s\n", argv[i], grad_result_score(result),
             grad_result_normalized_score(result),
             grad_result_is_anomalous(result) ? "anomalous" : "good");
    }
    grad_result_free(result);
    grad_image_free(image);
  }
  grad_context_free(ctx);
  grad_model_free(model);
  return failures ? CLI_FAILURE : CLI_OK;
}
