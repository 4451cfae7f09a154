// The whole loop in C++ with <grad/grad.hpp>: train on a folder of good
// images, save, load, score from several threads (one grad::Context each,
// one shared model), write each image's heatmap overlay as a PNG.
//
//   loop_cpp FOLDER MODEL OUT_DIR IMAGE...
#include <grad/grad.hpp>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 5) {
    std::cerr << "usage: " << argv[0] << " FOLDER MODEL OUT_DIR IMAGE...\n";
    return 2;
  }
  const std::string out_dir = argv[3];
  const std::vector<std::string> paths(argv + 4, argv + argc);
  try {
    // 1. Train (small and quick here; the defaults are 224 px and 100 epochs), 2. save.
    grad_backbone_options backbone = grad::backbone_options();
    backbone.input_size = 128;
    grad_model_options options = grad::model_options();
    options.backbone = &backbone;
    grad_train_options training = grad::train_options();
    training.epochs = 2;
    grad::Model::train_folders({argv[1]}, options, training).save(argv[2]);

    // 3. Load, as a separate program would.
    const grad::Model model = grad::Model::load(argv[2]);

    // 4. Score from two threads; an exception in a thread is kept for main.
    const int threads = 2;
    std::vector<double> scores(paths.size());
    std::vector<std::exception_ptr> errors(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++)
      pool.emplace_back([&, t] {
        try {
          grad::Context ctx(model);  // one per thread
          for (size_t i = t; i < paths.size(); i += threads) {
            grad::Image image = grad::Image::load(paths[i]);
            grad::Result result = ctx.score(image);
            grad::overlay(model, image, result)
                .save_png(out_dir + "/overlay_" + std::to_string(i) + ".png");
            scores[i] = result.score();
          }
        } catch (...) {
          errors[t] = std::current_exception();
        }
      });
    for (std::thread &t : pool) t.join();
    for (const std::exception_ptr &e : errors)
      if (e) std::rethrow_exception(e);
    for (size_t i = 0; i < paths.size(); i++)
      std::cout << paths[i] << ": score " << scores[i] << ", overlay " << out_dir
                << "/overlay_" << i << ".png\n";
  } catch (const grad::Error &e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
