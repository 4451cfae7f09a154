/* grad train: train a unified model on folders of normal images. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "inputs.h"
#include "output.h"
#include "progress.h"
#include "train_presets.h"

static void usage(FILE *to) {
  fputs(
      "Usage: grad train -o MODEL --data DIR [--data DIR ...] [OPTIONS]\n"
      "Train one model on the normal images of every DIR: an MVTec-layout category\n"
      "(its train/good is used) or a plain folder of PNG/JPEG images.\n\n"
      "  -o, --output FILE         model file to write (saved atomically)\n"
      "  -d, --data DIR            a category or image folder (repeatable)\n"
      "      --preset NAME         the paper's configuration: grad, crad, crad-s (below)\n"
      "      --arch NAME           backbone: resnet18 (default), resnet34, resnet50,\n"
      "                            resnet101, wide_resnet50_2, wide_resnet101_2,\n"
      "                            efficientnet_b0..b7 (torchvision layout) or\n"
      "                            efficientnet_b0_same..b7_same (efficientnet_pytorch)\n"
      "      --weights FILE        converted torchvision weights (safetensors)\n"
      "      --random-weights SEED seeded random backbone weights (the default, seed 0;\n"
      "                            for tests and demos only: real use needs ImageNet weights)\n"
      "      --layers LIST         backbone stages, e.g. 2,3 (default); 1..4 for a ResNet,\n"
      "                            1..5 for an EfficientNet (strides 2..32)\n"
      "      --size S              input size (default 224)\n"
      "      --channels C          channels after the PCA reduction (default 64)\n"
      "      --blocks N            decoder blocks (default 2; the paper uses 7)\n"
      "      --epochs N            training epochs (default 100)\n"
      "      --batch N             mini-batch size (default 16)\n"
      "      --seed N              seed of the store, shuffling and noise (default 0)\n"
      "      --holdout F           fraction of images kept out to calibrate (default 0.1)\n"
      "      --checkpoint FILE     save a checkpoint there every --checkpoint-every epochs\n"
      "      --checkpoint-every N  (default 10 when --checkpoint is given)\n"
      "      --resume FILE         continue from a checkpoint (same data and options)\n"
      "      --from MODEL          fine-tune: continue MODEL's training on the --data\n"
      "                            folders for --epochs more epochs (same backbone and\n"
      "                            reduction; give the old folders too); thresholds\n"
      "                            calibrated again\n"
      "      --skip-bad            leave out the images that cannot be decoded, with a\n"
      "                            warning each (default: such an image is an error)\n"
      "      --precision P         fp32 (default) or bf16: the decoder's convolutions\n"
      "                            train in bf16 on CPUs with native bf16 (faster for\n"
      "                            the crad presets; docs/training.md)\n"
      "  -j, --threads N           threads (default: all cores)\n"
      "  -h, --help                show this help\n\n",
      to);
  cli_train_presets_usage(to);
}

/* Ctrl-C or SIGTERM: the first one finishes the current epoch so that its
 * checkpoint can be saved, a second one stops at the next step. */
static volatile sig_atomic_t signals_seen = 0, last_signal = 0;
static void on_signal(int sig) {
  last_signal = sig;
  signals_seen++;
}

typedef struct train_state {
  cli_progress bar;  /* of the current phase */
  int phase;         /* of bar; -1 before the first report */
  int checkpoint_every;
  int saved_epoch;   /* the epoch the checkpoint file holds, 0: none yet */
  int finishing;     /* the notice about finishing the epoch was printed */
} train_state;

/* A new bar when the phase changes: each phase has its own rate and ETA. */
static void enter_phase(train_state *t, int phase) {
  static const char *const labels[4] = {"training", "features", "reduction", "calibration"};
  static const char *const units[4] = {"steps", "images", "images", "images"};
  if (phase == t->phase || phase < 0 || phase > 3) return;
  if (t->phase >= 0) cli_progress_finish(&t->bar);
  cli_progress_init(&t->bar, labels[phase], units[phase]);
  t->phase = phase;
}

static int show_progress(const grad_train_progress *p, void *user) {
  train_state *t = user;
  enter_phase(t, p->phase);
  char detail[96];
  if (p->phase != GRAD_TRAIN_PHASE_EPOCHS) {
    /* Before the first step there is nothing to save: stop at once. */
    snprintf(detail, sizeof detail, "%lld/%lld images", (long long)p->phase_done,
             (long long)p->phase_total);
    cli_progress_update(&t->bar, (double)p->phase_done, (double)p->phase_total, detail,
                        p->eta_seconds);
    return signals_seen > 0;
  }
  snprintf(detail, sizeof detail, "epoch %d/%d loss %.5f", p->epoch + 1, p->epochs, p->loss);
  double total = (double)p->epochs * p->steps_per_epoch;
  double done = (double)p->epoch * p->steps_per_epoch + p->step;
  cli_progress_update(&t->bar, done, total, detail, p->eta_seconds);
  int stop = signals_seen >= 2 || (signals_seen == 1 && p->epoch_done);
  if (p->epoch_done && (stop || p->epoch + 1 == p->epochs ||
                        (t->checkpoint_every && (p->epoch + 1) % t->checkpoint_every == 0)))
    t->saved_epoch = p->epoch + 1; /* the library saves it before going on */
  if (signals_seen == 1 && !stop && !t->finishing) {
    cli_progress_finish(&t->bar);
    fprintf(stderr, "grad train: interrupted: finishing epoch %d to save its checkpoint "
            "(interrupt again to stop now)\n", p->epoch + 1);
    t->finishing = 1;
  }
  return stop;
}

/* The command that continues this run: the same arguments, with
 * --resume CHECKPOINT instead of any --resume given. */
static void print_resume_command(int argc, char **argv, const char *checkpoint) {
  fputs("To resume: ", stderr);
  cli_put_shell_word(stderr, cli_program);
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
      i++;
      continue;
    }
    if (!strncmp(argv[i], "--resume=", 9)) continue;
    fputc(' ', stderr);
    cli_put_shell_word(stderr, argv[i]);
  }
  fputs(" --resume ", stderr);
  cli_put_shell_word(stderr, checkpoint);
  fputc('\n', stderr);
}

/* The warnings the library put in the model's description, on stderr. */
static void print_warnings(const grad_model *model) {
  const char *w = grad_model_description(model);
  while ((w = strstr(w, "; warning: "))) {
    w += 2;
    size_t n = strcspn(w + 9, ";") + 9;
    fprintf(stderr, "grad train: %.*s\n", (int)n, w);
  }
}

/* --skip-bad: the training images of every folder that decode; the others
 * are named on stderr and counted. 0 when none is left or on error. */
static int readable_images(const char *const *folders, int count, cli_paths *out,
                           char *note, size_t note_size) {
  cli_paths all = {0};
  int ok = 1;
  for (int i = 0; ok && i < count; i++) ok = cli_paths_add_training_folder(&all, folders[i], "train");
  size_t skipped = 0;
  for (size_t i = 0; ok && i < all.count; i++) {
    grad_image *image = NULL;
    grad_status s = grad_image_load(all.paths[i], &image);
    grad_image_free(image);
    if (s == GRAD_OK) {
      ok = cli_paths_add(out, all.paths[i]);
    } else {
      fputs("grad train: warning: skipping ", stderr);
      const char *message = grad_last_error();
      if (!strstr(message, all.paths[i])) {
        cli_put_escaped(stderr, all.paths[i]);
        fputs(": ", stderr);
      }
      cli_put_escaped(stderr, message);
      fputc('\n', stderr);
      skipped++;
    }
  }
  if (ok && skipped) {
    fprintf(stderr, "grad train: --skip-bad: left out %zu of %zu images\n", skipped, all.count);
    snprintf(note, note_size, "--skip-bad left out %zu of %zu images (undecodable)", skipped,
             all.count);
  }
  if (ok && !out->count) {
    fprintf(stderr, "grad train: no readable training images left\n");
    ok = 0;
  }
  cli_paths_free(&all);
  return ok;
}

enum { OPT_ARCH = 256, OPT_WEIGHTS, OPT_RANDOM, OPT_LAYERS, OPT_SIZE, OPT_CHANNELS, OPT_BLOCKS,
       OPT_EPOCHS, OPT_BATCH, OPT_SEED, OPT_HOLDOUT, OPT_CHECKPOINT, OPT_EVERY, OPT_RESUME,
       OPT_SKIP_BAD, OPT_PRESET, OPT_FROM, OPT_PRECISION };

int cmd_train(int argc, char **argv) {
  static const struct option options[] = {
    {"output", required_argument, NULL, 'o'}, {"data", required_argument, NULL, 'd'},
    {"arch", required_argument, NULL, OPT_ARCH}, {"weights", required_argument, NULL, OPT_WEIGHTS},
    {"random-weights", required_argument, NULL, OPT_RANDOM},
    {"layers", required_argument, NULL, OPT_LAYERS}, {"size", required_argument, NULL, OPT_SIZE},
    {"channels", required_argument, NULL, OPT_CHANNELS},
    {"blocks", required_argument, NULL, OPT_BLOCKS}, {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"batch", required_argument, NULL, OPT_BATCH}, {"seed", required_argument, NULL, OPT_SEED},
    {"holdout", required_argument, NULL, OPT_HOLDOUT},
    {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
    {"checkpoint-every", required_argument, NULL, OPT_EVERY},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"skip-bad", no_argument, NULL, OPT_SKIP_BAD}, {"threads", required_argument, NULL, 'j'},
    {"preset", required_argument, NULL, OPT_PRESET}, {"from", required_argument, NULL, OPT_FROM},
    {"precision", required_argument, NULL, OPT_PRECISION}, {"help", no_argument, NULL, 'h'},
    {0}};
  grad_backbone_options bo;
  grad_backbone_options_init(&bo, sizeof bo);
  grad_model_options mo;
  grad_model_options_init(&mo, sizeof mo);
  mo.backbone = &bo;
  grad_train_options to;
  grad_train_options_init(&to, sizeof to);
  const char *output = NULL, *layers_text = "2,3", *from = NULL;
  const char *fixed = NULL; /* the first option that --from cannot honour */
  const char *folders[64];
  int folder_count = 0, random_given = 0, skip_bad = 0;
  long value;
  int opt, presets = 0;
  /* The preset first, so that every option given explicitly overrides it. */
  const char *preset = cli_train_preset_find(argc, argv, &presets);
  if (presets > 1) return cli_usage_error("train", "--preset given %d times", presets);
  if (preset && cli_train_preset_apply(preset, &mo, &bo, &to, &layers_text) != CLI_OK)
    return CLI_USAGE;
  while ((opt = getopt_long(argc, argv, ":o:d:j:h", options, NULL)) != -1) {
    switch (opt) {
    case 'o': output = optarg; break;
    case 'd':
      if (folder_count == 64) return cli_usage_error("train", "at most 64 --data folders");
      folders[folder_count++] = optarg;
      break;
    case OPT_ARCH: bo.arch = optarg; break;
    case OPT_WEIGHTS: bo.weights_path = optarg; break;
    case OPT_RANDOM:
      if (!cli_parse_int(optarg, 0, LONG_MAX, &value))
        return cli_usage_error("train", "--random-weights needs a seed >= 0");
      bo.random_seed = (uint64_t)value;
      random_given = 1;
      break;
    case OPT_LAYERS:
      if (!cli_parse_layers(optarg, &bo.layers))
        return cli_usage_error("train", "--layers takes stages 1..5 such as 2,3");
      layers_text = optarg;
      break;
    case OPT_SIZE:
      if (!cli_parse_int(optarg, 32, 4096, &value))
        return cli_usage_error("train", "--size must be in 32..4096");
      bo.input_size = (int)value;
      break;
    case OPT_CHANNELS:
      if (!cli_parse_int(optarg, 1, 4096, &value))
        return cli_usage_error("train", "--channels must be in 1..4096");
      mo.channels = (int)value;
      break;
    case OPT_BLOCKS:
      if (!cli_parse_int(optarg, 0, 64, &value))
        return cli_usage_error("train", "--blocks must be in 0..64");
      mo.blocks = (int)value;
      break;
    case OPT_EPOCHS:
      if (!cli_parse_int(optarg, 1, 100000, &value))
        return cli_usage_error("train", "--epochs must be in 1..100000");
      to.epochs = (int)value;
      break;
    case OPT_BATCH:
      if (!cli_parse_int(optarg, 1, 4096, &value))
        return cli_usage_error("train", "--batch must be in 1..4096");
      to.batch = (int)value;
      break;
    case OPT_SEED:
      if (!cli_parse_int(optarg, 0, LONG_MAX, &value))
        return cli_usage_error("train", "--seed needs a number >= 0");
      to.seed = (uint64_t)value;
      break;
    case OPT_HOLDOUT: {
      char *end = NULL;
      mo.holdout_fraction = strtod(optarg, &end);
      if (end == optarg || *end || !(mo.holdout_fraction >= 0 && mo.holdout_fraction < 1))
        return cli_usage_error("train", "--holdout '%s': give a fraction in [0, 1), such as 0.1",
                               optarg);
      break;
    }
    case OPT_CHECKPOINT: to.checkpoint_path = optarg; break;
    case OPT_EVERY:
      if (!cli_parse_int(optarg, 1, 100000, &value))
        return cli_usage_error("train", "--checkpoint-every must be >= 1");
      to.checkpoint_every = (int)value;
      break;
    case OPT_RESUME: to.resume_path = optarg; break;
    case OPT_SKIP_BAD: skip_bad = 1; break;
    case 'j':
      if (!cli_parse_int(optarg, 1, 1024, &value))
        return cli_usage_error("train", "--threads must be in 1..1024");
      grad_threads_set((int)value);
      break;
    case OPT_PRESET: break; /* applied above */
    case OPT_FROM: from = optarg; break;
    case OPT_PRECISION:
      if (!cli_parse_precision(optarg, &to.precision))
        return cli_usage_error("train", "--precision must be fp32 or bf16");
      break;
    case 'h': usage(stdout); return CLI_OK;
    default: return cli_bad_option("train", opt, argv);
    }
    if (!fixed && opt >= OPT_ARCH && opt != OPT_EPOCHS && opt != OPT_BATCH && opt != OPT_SEED &&
        opt != OPT_FROM && opt != OPT_PRECISION)
      fixed = argv[optind - 1 - (optarg && optarg == argv[optind - 1])];
  }
  if (optind != argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
  if (from && fixed)
    return cli_usage_error("train", "--from MODEL continues that model as it is: %s cannot be "
                           "used with it", fixed);
  if (from && presets) return cli_usage_error("train", "--from MODEL cannot take a --preset");
  if (!output) return cli_usage_error("train", "-o MODEL is required");
  if (!folder_count) return cli_usage_error("train", "at least one --data DIR is required");
  if (bo.weights_path && random_given)
    return cli_usage_error("train", "--weights and --random-weights exclude each other");
  if (to.checkpoint_path && !to.checkpoint_every) to.checkpoint_every = 10;
  int raw_channels = 0;
  if (!from && cli_check_arch("train", bo.arch, bo.layers, &raw_channels) != CLI_OK)
    return CLI_USAGE;
  if (!from && mo.channels > raw_channels)
    return cli_usage_error("train", "--channels %d: %s with layers %s has %d channels (valid: "
                           "1..%d)", mo.channels, bo.arch, layers_text, raw_channels, raw_channels);

  if (!cli_check_writable("train", "-o", output)) return CLI_FAILURE;
  /* Without --checkpoint, an interruption still leaves something to resume
   * from: OUTPUT.checkpoint, removed once the model is saved. */
  char default_checkpoint[4096];
  int own_checkpoint = !to.checkpoint_path && !from; /* --from has no resume */
  if (own_checkpoint) {
    if (snprintf(default_checkpoint, sizeof default_checkpoint, "%s.checkpoint", output) >=
        (int)sizeof default_checkpoint)
      return cli_usage_error("train", "-o %s: path too long", output);
    to.checkpoint_path = default_checkpoint;
  } else if (to.checkpoint_path && !cli_check_writable("train", "--checkpoint", to.checkpoint_path)) {
    return CLI_FAILURE;
  }

  if (from)
    fprintf(stderr, "grad train: continuing %s for %d more epochs\n", from, to.epochs);
  else
    fprintf(stderr, "grad train: backbone %s with %s\n", bo.arch,
            bo.weights_path ? bo.weights_path
                            : "seeded random weights (not ImageNet: demo quality)");
  train_state state = {.checkpoint_every = to.checkpoint_every, .phase = -1};
  to.progress = show_progress;
  to.progress_user = &state;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART; /* file reads in the library go on */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  grad_model *model = NULL;
  grad_status s;
  if (from) {
    s = grad_model_train_more(from, &to, folders, folder_count, &model);
  } else if (skip_bad) {
    cli_paths files = {0};
    char note[128] = "";
    if (!readable_images(folders, folder_count, &files, note, sizeof note)) {
      cli_paths_free(&files);
      return CLI_FAILURE;
    }
    if (note[0]) to.note = note;
    s = grad_model_train_files(&mo, &to, (const char *const *)files.paths, files.count, &model);
    cli_paths_free(&files);
  } else {
    s = grad_model_train(&mo, &to, folders, folder_count, &model);
  }
  if (state.phase >= 0) cli_progress_finish(&state.bar);
  if (s == GRAD_E_CANCELLED && signals_seen) {
    int code = 128 + last_signal; /* 130 for SIGINT, 143 for SIGTERM */
    fprintf(stderr, "grad train: stopped by %s\n", last_signal == SIGTERM ? "SIGTERM" : "SIGINT");
    if (model) {
      print_warnings(model);
      grad_status saved = grad_model_save(model, output);
      if (saved == GRAD_OK)
        fprintf(stderr, "grad train: wrote %s: the model of the last completed step, usable but "
                "not fully trained\n", output);
      else
        cli_fail("train", saved, "cannot save the model");
      grad_model_free(model);
    }
    struct stat st;
    if (from) {
      fprintf(stderr, "grad train: to go on, train --from %s\n", output);
    } else if (state.saved_epoch || (to.resume_path && !strcmp(to.resume_path, to.checkpoint_path) &&
                              stat(to.checkpoint_path, &st) == 0)) {
      if (state.saved_epoch)
        fprintf(stderr, "grad train: checkpoint of epoch %d in %s\n", state.saved_epoch,
                to.checkpoint_path);
      print_resume_command(argc, argv, to.checkpoint_path);
    } else {
      fprintf(stderr, "grad train: no epoch was completed, so there is no checkpoint; run the "
              "same command again to start over\n");
    }
    return code;
  }
  if (s != GRAD_OK) {
    grad_model_free(model);
    return cli_fail("train", s, "training failed");
  }
  print_warnings(model);
  s = grad_model_save(model, output);
  if (s == GRAD_OK) {
    fprintf(stderr, "grad train: wrote %s (image threshold %.4g)\n", output,
            grad_model_image_threshold(model));
    if (own_checkpoint) unlink(default_checkpoint);
  }
  grad_model_free(model);
  return s == GRAD_OK ? CLI_OK : cli_fail("train", s, "cannot save the model");
}
