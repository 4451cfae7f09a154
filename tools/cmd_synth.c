/* grad synth: write the procedural MVTec-layout data set (grad_synth_write). */
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *to) {
  fputs("Usage: grad synth --out DIR [--seed N] [--size N] [--train N] [--test N]\n"
        "                  [--category NAME]\n"
        "Write a small synthetic anomaly-detection data set in the MVTec AD layout:\n"
        "DIR/CLASS/{train/good, test/good, test/DEFECT, ground_truth/DEFECT}.\n"
        "Classes: weave (gray regular texture), marble (irregular texture),\n"
        "washer (object on a background). The same options give the same images.\n\n"
        "  -o, --out DIR        output folder (created if missing)\n"
        "  -s, --seed N         random seed (default 1)\n"
        "      --size N         image side in pixels, 32..4096 (default 128)\n"
        "      --train N        normal training images per class (default 40)\n"
        "      --test N         test images per class, a quarter good (default 20)\n"
        "      --category NAME  write one class only\n"
        "  -h, --help           show this help\n", to);
}

int cmd_synth(int argc, char **argv) {
  enum { OPT_SIZE = 256, OPT_TRAIN, OPT_TEST, OPT_CATEGORY };
  static const struct option options[] = {
    {"out", required_argument, NULL, 'o'},
    {"seed", required_argument, NULL, 's'},
    {"size", required_argument, NULL, OPT_SIZE},
    {"train", required_argument, NULL, OPT_TRAIN},
    {"test", required_argument, NULL, OPT_TEST},
    {"category", required_argument, NULL, OPT_CATEGORY},
    {"help", no_argument, NULL, 'h'},
    {0}};
  grad_synth_options opts;
  grad_synth_options_init(&opts, sizeof opts);
  long value;
  int opt;
  while ((opt = getopt_long(argc, argv, ":o:s:h", options, NULL)) != -1) {
    switch (opt) {
      case 'h': usage(stdout); return CLI_OK;
      case 'o': opts.out_dir = optarg; break;
      case 's':
        if (!cli_parse_int(optarg, 0, LONG_MAX, &value))
          return cli_usage_error("synth", "--seed '%s' is not a whole number >= 0", optarg);
        opts.seed = (uint64_t)value;
        break;
      case OPT_SIZE:
        if (!cli_parse_int(optarg, 32, 4096, &value))
          return cli_usage_error("synth", "--size '%s' is not in 32..4096", optarg);
        opts.size = (int)value;
        break;
      case OPT_TRAIN:
      case OPT_TEST:
        if (!cli_parse_int(optarg, 0, 100000, &value))
          return cli_usage_error("synth", "--%s '%s' is not in 0..100000",
                                 opt == OPT_TRAIN ? "train" : "test", optarg);
        *(opt == OPT_TRAIN ? &opts.train_count : &opts.test_count) = (int)value;
        break;
      case OPT_CATEGORY: {
        int known = 0;
        for (int i = 0; grad_synth_category_name(i); i++)
          known |= !strcmp(optarg, grad_synth_category_name(i));
        if (!known) return cli_usage_error("synth", "unknown class '%s'", optarg);
        opts.category = optarg;
        break;
      }
      default: return cli_bad_option("synth", opt, argv);
    }
  }
  if (optind != argc) return cli_usage_error("synth", "unexpected argument '%s'", argv[optind]);
  if (!opts.out_dir) return cli_usage_error("synth", "--out DIR is required");
  grad_status st = grad_synth_write(&opts);
  if (st != GRAD_OK) return cli_fail("synth", st, "writing the data set");
  fprintf(stderr, "grad synth: wrote %s (%d x %d, %d train + %d test images per class)\n",
          opts.out_dir, opts.size, opts.size, opts.train_count, opts.test_count);
  return CLI_OK;
}
