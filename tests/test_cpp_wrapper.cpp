// <grad/grad.hpp> against the C API it wraps: training from folders, files
// and memory, cancellation, scoring from two threads, batches, overlays,
// save and load, and errors as grad::Error with the status and message.
// A plain C++ program (no Check): each CHECK failure prints and exits 1.
#define GRAD_EXPERIMENTAL /* uses grad_synth_* (not yet promised) */
#include <grad/grad.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

template <typename F>
static grad_status status_of(F f) {
  try {
    f();
  } catch (const grad::Error &e) {
    return e.status();
  }
  return GRAD_OK;
}

int main() {
  char root[] = "/tmp/grad-cpp-XXXXXX";
  CHECK(mkdtemp(root));
  std::string data = std::string(root) + "/data";
  grad_synth_options so;
  grad_synth_options_init(&so, sizeof so);
  so.out_dir = data.c_str();
  so.size = 64;
  so.train_count = 8;
  so.test_count = 4;
  so.category = "weave";
  grad::check(grad_synth_write(&so));
  std::string category = data + "/weave";

  grad_backbone_options bo = grad::backbone_options();
  bo.input_size = 64;
  grad_model_options mo = grad::model_options();
  mo.backbone = &bo;
  mo.channels = 16;
  mo.blocks = 1;
  mo.holdout_fraction = 0.25;
  grad_train_options to = grad::train_options();
  to.epochs = 1;
  to.batch = 4;

  // Folders, files and images in memory train the same model.
  grad::Model model = grad::Model::train_folders({category}, mo, to);
  std::vector<std::string> files;
  std::vector<grad::Image> images;
  for (int i = 0; i < 8; i++) {
    char name[32];
    std::snprintf(name, sizeof name, "/train/good/%03d.png", i);
    files.push_back(category + name);
    images.push_back(grad::Image::load(files.back()));
  }
  grad::Model from_files = grad::Model::train_files(files, mo, to);
  grad::Model from_memory = grad::Model::train_images(images, mo, to);
  CHECK(model.image_threshold() == from_files.image_threshold());
  CHECK(model.image_threshold() == from_memory.image_threshold());
  CHECK(model.provenance("source") == std::optional<std::string_view>("folders"));
  CHECK(!model.provenance("no such key"));
  CHECK(!model.cancelled());

  // A progress callback returning false stops training with a usable model.
  grad_train_options longer = to;
  longer.epochs = 3;
  int calls = 0;
  grad::Model stopped = grad::Model::train_folders(
      {category}, mo, longer, [&](const grad_train_progress &p) {
        return p.phase != GRAD_TRAIN_PHASE_EPOCHS || ++calls < 2;  // stop on the second step
      });
  CHECK(calls == 2);
  CHECK(stopped.cancelled());
  CHECK(std::isfinite(stopped.image_threshold()));

  // Save, load, and score from two threads, each with its own context.
  std::string path = std::string(root) + "/model.grad";
  model.save(path);
  grad::Model loaded = grad::Model::load(path);
  std::string test_image = category + "/test/good/000.png";
  grad::Image image = grad::Image::load(test_image);
  double expected = grad::Context(model).score(image).score();
  std::vector<double> scores(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; t++)
    threads.emplace_back([&, t] {
      grad::Context ctx(loaded);
      scores[t] = ctx.score(image).score();
    });
  for (std::thread &t : threads) t.join();
  CHECK(scores[0] == expected && scores[1] == expected);

  // Batches, overlays and PNGs.
  grad::Context ctx(loaded);
  std::vector<grad::Result> results = ctx.score_batch(images);
  CHECK(results.size() == images.size());
  grad::Result single = ctx.score(images[3]);
  CHECK(std::fabs(results[3].score() - single.score()) <= 1e-5 * std::fabs(single.score()));
  CHECK(single.map().size() == 64u * 64u);
  CHECK(single.mask().size() == 64u * 64u);
  grad::Image overlay = grad::overlay(loaded, image, single);
  CHECK(overlay.channels() == 3 && overlay.width() == image.width());
  std::string png = std::string(root) + "/overlay.png";
  overlay.save_png(png);
  CHECK(grad::Image::load(png).width() == 64);
  std::vector<std::uint8_t> gray(16 * 8, 7);
  grad::Image small = grad::Image::from_pixels(gray.data(), 16, 8, 1);
  CHECK(small.pixels().size() == gray.size() && small.pixels()[5] == 7);

  // Errors carry the status and libgrad's message.
  try {
    grad::Model::load(std::string(root) + "/missing.grad");
    CHECK(false);
  } catch (const grad::Error &e) {
    CHECK(e.status() == GRAD_E_IO);
    CHECK(std::string(e.what()).find("GRAD_E_IO: ") == 0);
    CHECK(std::string(e.what()).find("missing.grad") != std::string::npos);
  }
  CHECK(status_of([&] { grad::Image::from_pixels(gray.data(), 16, 8, 2); }) == GRAD_E_INVALID_ARG);
  CHECK(status_of([&] { grad::Model::train_files(std::vector<std::string>{}, mo, to); }) ==
        GRAD_E_INVALID_ARG);
  std::printf("grad.hpp: all checks passed\n");
  return 0;
}
