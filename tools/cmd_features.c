/* grad features: the backbone's aligned, concatenated features of one image. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *to) {
  fputs("Usage: grad features --arch NAME (--weights FILE | --random-weights SEED)\n"
        "                     [--layers 2,3] [--size 224] [--stride 8] IMAGE -o OUT.safetensors\n"
        "Run the frozen backbone and its neck on one image (PNG or JPEG) and write the\n"
        "features (tensor 'features', C x H x W, F32) to a safetensors file.\n\n"
        "  -a, --arch NAME           resnet18, resnet34, resnet50, resnet101,\n"
        "                            wide_resnet50_2 (default), wide_resnet101_2,\n"
        "                            efficientnet_b0..b7 (torchvision layout) or\n"
        "                            efficientnet_b0_same..b7_same (efficientnet_pytorch)\n"
        "      --weights FILE        torchvision weights converted by convert_torchvision.py\n"
        "      --random-weights SEED seeded random weights in torchvision's initialisation\n"
        "                            (tests and demos only)\n"
        "      --layers LIST         stages to concatenate, e.g. 2,3 (default) or 1,2,3;\n"
        "                            an EfficientNet has 1..5 (strides 2..32)\n"
        "      --size S              input size S x S (default 224)\n"
        "      --stride S            output stride: 4, 8 (default), 16 or 32\n"
        "  -o, --output FILE         the safetensors file to write\n"
        "  -j, --threads N           threads (default: all cores)\n"
        "  -h, --help                show this help\n",
        to);
}

enum { OPT_WEIGHTS = 256, OPT_RANDOM, OPT_LAYERS, OPT_SIZE, OPT_STRIDE };

/* Writes features (C x H x W) with the backbone's description as metadata. */
static grad_status save_features(const char *path, const grad_backbone *bb, const char *image,
                                 const float *features) {
  grad_tensorfile_writer *w = NULL;
  const int64_t shape[3] = {grad_backbone_feature_channels(bb), grad_backbone_feature_height(bb),
                            grad_backbone_feature_width(bb)};
  char layers[16] = "";
  for (int k = 1; k <= 5; k++)
    if (grad_backbone_layers(bb) & GRAD_BACKBONE_LAYER(k))
      snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "%s%d",
               layers[0] ? "," : "", k);
  char size[16], stride[16];
  snprintf(size, sizeof size, "%d", grad_backbone_input_size(bb));
  snprintf(stride, sizeof stride, "%d", grad_backbone_output_stride(bb));
  const char *const meta[][2] = {{"arch", grad_backbone_arch(bb)},
                                 {"weights", grad_backbone_weights_source(bb)},
                                 {"layers", layers}, {"input_size", size},
                                 {"output_stride", stride}, {"image", image}};
  grad_status st = grad_tensorfile_writer_create(&w);
  if (st == GRAD_OK) st = grad_tensorfile_writer_add_f32(w, "features", 3, shape, features);
  for (size_t i = 0; st == GRAD_OK && i < sizeof meta / sizeof meta[0]; i++)
    st = grad_tensorfile_writer_set_meta(w, meta[i][0], meta[i][1]);
  if (st == GRAD_OK) st = grad_tensorfile_writer_save(w, path);
  grad_tensorfile_writer_free(w);
  return st;
}

int cmd_features(int argc, char **argv) {
  static const struct option options[] = {
    {"arch", required_argument, NULL, 'a'},
    {"weights", required_argument, NULL, OPT_WEIGHTS},
    {"random-weights", required_argument, NULL, OPT_RANDOM},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"size", required_argument, NULL, OPT_SIZE},
    {"stride", required_argument, NULL, OPT_STRIDE},
    {"output", required_argument, NULL, 'o'},
    {"threads", required_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {0},
  };
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  const char *output = NULL;
  int random_given = 0;
  long value;
  int opt;
  while ((opt = getopt_long(argc, argv, ":a:o:j:h", options, NULL)) != -1) {
    switch (opt) {
    case 'a': bo.arch = optarg; break;
    case OPT_WEIGHTS: bo.weights_path = optarg; break;
    case OPT_RANDOM:
      if (!cli_parse_int(optarg, 0, 0x7fffffffL, &value))
        return cli_usage_error("features", "--random-weights needs a seed >= 0");
      bo.random_seed = (uint64_t)value;
      random_given = 1;
      break;
    case OPT_LAYERS:
      if (!cli_parse_layers(optarg, &bo.layers))
        return cli_usage_error("features", "--layers takes stages 1..4 such as 2,3");
      break;
    case OPT_SIZE:
      if (!cli_parse_int(optarg, 32, 4096, &value))
        return cli_usage_error("features", "--size must be in 32..4096");
      bo.input_size = (int)value;
      break;
    case OPT_STRIDE:
      if (!cli_parse_int(optarg, 4, 32, &value) || (value & (value - 1)))
        return cli_usage_error("features", "--stride must be 4, 8, 16 or 32");
      bo.output_stride = (int)value;
      break;
    case 'o': output = optarg; break;
    case 'j':
      if (!cli_parse_int(optarg, 1, 1024, &value))
        return cli_usage_error("features", "--threads must be in 1..1024");
      grad_threads_set((int)value);
      break;
    case 'h': usage(stdout); return CLI_OK;
    default: return cli_bad_option("features", opt, argv);
    }
  }
  if (optind + 1 != argc)
    return cli_usage_error("features", optind == argc ? "an IMAGE is required"
                                                      : "exactly one IMAGE is expected");
  if (!output) return cli_usage_error("features", "-o OUT.safetensors is required");
  if (bo.weights_path && random_given)
    return cli_usage_error("features", "--weights and --random-weights exclude each other");
  if (!bo.weights_path && !random_given)
    return cli_usage_error("features", "give --weights FILE or --random-weights SEED");
  int raw_channels = 0;
  if (cli_check_arch("features", bo.arch, bo.layers, &raw_channels) != CLI_OK) return CLI_USAGE;
  const char *image_path = argv[optind];

  grad_image *image = NULL;
  grad_backbone *bb = NULL;
  grad_workspace *ws = NULL;
  float *input = NULL, *features = NULL;
  int rc = CLI_OK;
  grad_status st = grad_image_load(image_path, &image);
  if (st != GRAD_OK) {
    rc = cli_fail("features", st, "loading the image");
    goto done;
  }
  st = grad_backbone_create(&bo, &bb);
  if (st != GRAD_OK) {
    rc = cli_fail("features", st, "creating the backbone");
    goto done;
  }
  size_t in = (size_t)3 * bo.input_size * bo.input_size;
  size_t out = (size_t)grad_backbone_feature_channels(bb) * grad_backbone_feature_height(bb) *
               grad_backbone_feature_width(bb);
  input = malloc(in * sizeof(float));
  features = malloc(out * sizeof(float));
  if (!input || !features) {
    fprintf(stderr, "grad features: out of memory\n");
    rc = CLI_FAILURE;
    goto done;
  }
  if ((st = grad_image_to_tensor(image, bo.input_size, input)) != GRAD_OK ||
      (st = grad_workspace_create(&ws)) != GRAD_OK ||
      (st = grad_backbone_features(bb, ws, input, 1, features)) != GRAD_OK) {
    rc = cli_fail("features", st, "computing the features");
    goto done;
  }
  st = save_features(output, bb, image_path, features);
  if (st != GRAD_OK) {
    rc = cli_fail("features", st, "writing the features");
    goto done;
  }
  fprintf(stderr, "grad features: %s: %d x %d x %d features (%s, %s weights) -> %s\n",
          image_path, grad_backbone_feature_channels(bb), grad_backbone_feature_height(bb),
          grad_backbone_feature_width(bb), grad_backbone_arch(bb),
          grad_backbone_weights_source(bb), output);
done:
  free(input);
  free(features);
  grad_workspace_free(ws);
  grad_backbone_free(bb);
  grad_image_free(image);
  return rc;
}
