// Embedding scoring in C++ with small RAII wrappers around the C handles.
//
//   score_cpp MODEL IMAGE...
#include <grad/grad.h>

#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace grad {

// Turns a failed status into an exception carrying libgrad's message.
inline void check(grad_status status) {
  if (status != GRAD_OK)
    throw std::runtime_error(std::string(grad_status_name(status)) + ": " + grad_last_error());
}

template <typename T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *p) const { Free(p); }
};
using Model = std::unique_ptr<grad_model, Deleter<grad_model, grad_model_free>>;
using Context = std::unique_ptr<grad_context, Deleter<grad_context, grad_context_free>>;
using Image = std::unique_ptr<grad_image, Deleter<grad_image, grad_image_free>>;
using Result = std::unique_ptr<grad_result, Deleter<grad_result, grad_result_free>>;

inline Model load_model(const std::string &path) {
  grad_model *m = nullptr;
  check(grad_model_load(path.c_str(), &m));
  return Model(m);
}

// A scorer owns one context: make one per thread, all sharing the model.
class Scorer {
 public:
  explicit Scorer(const grad_model *model) : model_(model) {
    grad_context *c = nullptr;
    check(grad_context_create(model, &c));
    ctx_.reset(c);
  }
  Result score(const std::string &path) {
    grad_image *raw = nullptr;
    check(grad_image_load(path.c_str(), &raw));
    Image image(raw);
    grad_result *r = nullptr;
    check(grad_model_score(model_, ctx_.get(), image.get(), &r));
    return Result(r);
  }

 private:
  const grad_model *model_;
  Context ctx_;
};

}  // namespace grad

int main(int argc, char **argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL IMAGE...\n";
    return 2;
  }
  try {
    grad::Model model = grad::load_model(argv[1]);
    grad::Scorer scorer(model.get());
    for (int i = 2; i < argc; i++) {
      grad::Result r = scorer.score(argv[i]);
      std::cout << argv[i] << ": " << grad_result_score(r.get())
                << (grad_result_is_anomalous(r.get()) ? " anomalous" : " good") << '\n';
    }
  } catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
