/* grad eval: image AUROC, pixel AUROC, AUPRO and F1-max on MVTec-layout data. */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli.h"
#include "eval_report.h"

static void usage(FILE *to) {
  fputs("Usage: grad eval -m MODEL --data ROOT [--json FILE] [--maps DIR] [-j N]\n"
        "                 [--precision fp32|bf16]\n"
        "Evaluate a model on ROOT, one MVTec-layout category (ROOT/test/DEFECT,\n"
        "ROOT/ground_truth/DEFECT) or a folder of them. Prints per category the\n"
        "image AUROC, pixel AUROC, AUPRO (to FPR 0.3) and image F1-max in percent,\n"
        "and the scoring speed, then the mean row.\n\n"
        "  -m, --model FILE   the model file\n"
        "  -d, --data ROOT    a category or a folder of categories\n"
        "      --json FILE    also write the figures as JSON\n"
        "      --maps DIR     write heatmap overlays to DIR/CATEGORY/DEFECT/\n"
        "  -j, --threads N    threads (default: all cores)\n"
        "      --precision P  fp32 (default) or bf16 (CPUs with native bf16)\n"
        "  -h, --help         show this help\n",
        to);
}

int cmd_eval(int argc, char **argv) {
  static const struct option options[] = {
    {"model", required_argument, NULL, 'm'}, {"data", required_argument, NULL, 'd'},
    {"json", required_argument, NULL, 'J'}, {"maps", required_argument, NULL, 'M'},
    {"threads", required_argument, NULL, 'j'}, {"precision", required_argument, NULL, 'P'},
    {"help", no_argument, NULL, 'h'}, {0}};
  const char *model_path = NULL, *root = NULL, *json = NULL, *maps = NULL;
  int opt;
  long value;
  grad_precision precision = GRAD_PRECISION_FP32;
  while ((opt = getopt_long(argc, argv, ":m:d:j:h", options, NULL)) != -1) {
    switch (opt) {
    case 'm': model_path = optarg; break;
    case 'd': root = optarg; break;
    case 'J': json = optarg; break;
    case 'M': maps = optarg; break;
    case 'P':
      if (!cli_parse_precision(optarg, &precision))
        return cli_usage_error("eval", "--precision must be fp32 or bf16");
      break;
    case 'j':
      if (!cli_parse_int(optarg, 1, 1024, &value))
        return cli_usage_error("eval", "--threads must be in 1..1024");
      grad_threads_set((int)value);
      break;
    case 'h': usage(stdout); return CLI_OK;
    default: return cli_bad_option("eval", opt, argv);
    }
  }
  if (optind != argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
  if (!model_path || !root) return cli_usage_error("eval", "-m MODEL and --data ROOT are required");
  struct stat st; /* a --json file that cannot be written fails now, not after the work */
  if (json && !(stat(json, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) &&
      !cli_check_writable("eval", "--json", json))
    return CLI_FAILURE;
  grad_model *model = NULL;
  grad_status s = grad_model_load(model_path, &model);
  if (s != GRAD_OK) return cli_fail("eval", s, "cannot load the model");
  if ((s = grad_model_compute_set(model, GRAD_ENGINE_AUTO, precision)) != GRAD_OK) {
    grad_model_free(model);
    return cli_fail("eval", s, "cannot compute in that precision");
  }
  int code = cli_evaluate("eval", model, root, maps, json);
  grad_model_free(model);
  return code;
}
