// Embedding scoring in C++ with <grad/grad.hpp>: load a model, score the
// images given in one batch, print each decision, and write the heatmap
// overlay of the first image when OVERLAY.png is given.
//
//   score_cpp MODEL IMAGE... [-o OVERLAY.png]
#include <grad/grad.hpp>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  std::vector<std::string> paths;
  std::string overlay_path;
  for (int i = 2; i < argc; i++) {
    if (!std::strcmp(argv[i], "-o") && i + 1 < argc) overlay_path = argv[++i];
    else paths.emplace_back(argv[i]);
  }
  if (argc < 3 || paths.empty()) {
    std::cerr << "usage: " << argv[0] << " MODEL IMAGE... [-o OVERLAY.png]\n";
    return 2;
  }
  try {
    grad::Model model = grad::Model::load(argv[1]);
    grad::Context ctx(model);  // one per thread; the model is shared
    std::vector<grad::Image> images;
    for (const std::string &path : paths) images.push_back(grad::Image::load(path));
    std::vector<grad::Result> results = ctx.score_batch(images);
    for (size_t i = 0; i < results.size(); i++)
      std::cout << paths[i] << ": " << results[i].score()
                << (results[i].anomalous() ? " anomalous" : " good") << '\n';
    if (!overlay_path.empty()) grad::overlay(model, images[0], results[0]).save_png(overlay_path);
  } catch (const grad::Error &e) {  // e.status() is the grad_status
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
