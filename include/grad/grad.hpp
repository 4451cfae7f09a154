/*
 * libgrad for C++17: RAII handles over the C API, header-only.
 *
 *   #include <grad/grad.hpp>
 *
 *   grad::Model model = grad::Model::load("parts.grad");
 *   grad::Context ctx(model);                  // one per thread; the model is shared
 *   grad::Result r = ctx.score(grad::Image::load("part_0042.png"));
 *   std::cout << r.score() << (r.anomalous() ? " anomalous\n" : " good\n");
 *
 * Every handle owns its C object and frees it once (move-only, like
 * std::unique_ptr; get() gives the C pointer for calls not wrapped here).
 * A failing call throws grad::Error, which carries the grad_status and
 * libgrad's message (grad_last_error()). Paths are std::string_view; lists
 * of paths any range of strings; arrays grad::Span, built from a
 * std::vector, a std::array, a C array or a pointer and a size. Link exactly as for the C API (pkg-config grad,
 * CMake grad::grad).
 */
#ifndef GRAD_GRAD_HPP
#define GRAD_GRAD_HPP

#include <grad/grad.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grad {

/* A failed libgrad call: status() is the grad_status, what() the message. */
class Error : public std::runtime_error {
 public:
  Error(grad_status status, const std::string &message)
      : std::runtime_error(std::string(grad_status_name(status)) + ": " + message),
        status_(status) {}
  grad_status status() const noexcept { return status_; }

 private:
  grad_status status_;
};

/* Throws grad::Error for anything but GRAD_OK. */
inline void check(grad_status status) {
  if (status != GRAD_OK) throw Error(status, grad_last_error());
}

/* A view of count contiguous T (std::span is C++20). */
template <typename T>
class Span {
 public:
  constexpr Span() noexcept = default;
  constexpr Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
  template <std::size_t N>
  constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
  template <typename U, std::size_t N>
  constexpr Span(std::array<U, N> &array) noexcept : data_(array.data()), size_(N) {}
  template <typename U, std::size_t N>
  constexpr Span(const std::array<U, N> &array) noexcept : data_(array.data()), size_(N) {}
  template <typename U>
  Span(std::vector<U> &vector) noexcept : data_(vector.data()), size_(vector.size()) {}
  template <typename U>
  Span(const std::vector<U> &vector) noexcept : data_(vector.data()), size_(vector.size()) {}
  constexpr T *data() const noexcept { return data_; }
  constexpr std::size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
  constexpr T *begin() const noexcept { return data_; }
  constexpr T *end() const noexcept { return data_ + size_; }

 private:
  T *data_ = nullptr;
  std::size_t size_ = 0;
};

namespace detail {
template <typename T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *p) const noexcept { Free(p); }
};
template <typename T, void (*Free)(T *)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

/* C strings of a range of strings (anything std::string_view takes),
 * alive as long as this object. */
class CStrings {
 public:
  template <typename Strings>
  explicit CStrings(const Strings &strings) {
    for (const auto &s : strings) strings_.emplace_back(std::string_view(s));
    for (const std::string &s : strings_) pointers_.push_back(s.c_str());
  }
  const char *const *data() const noexcept { return pointers_.data(); }
  std::size_t size() const noexcept { return pointers_.size(); }

 private:
  std::vector<std::string> strings_;
  std::vector<const char *> pointers_;
};
}  // namespace detail

/* A decoded 8-bit image (gray or RGB). */
class Image {
 public:
  /* PNG or JPEG, detected from the content. */
  static Image load(std::string_view path) {
    grad_image *image = nullptr;
    check(grad_image_load(std::string(path).c_str(), &image));
    return Image(image);
  }
  /* A PNG or JPEG held in memory (bytes only read during the call). */
  static Image decode(Span<const std::uint8_t> bytes) {
    grad_image *image = nullptr;
    check(grad_image_load_memory(bytes.data(), bytes.size(), &image));
    return Image(image);
  }
  /* A copy of raw pixels, channels 1 or 3; stride 0 means packed rows. */
  static Image from_pixels(const std::uint8_t *pixels, int width, int height, int channels,
                           std::size_t stride = 0) {
    grad_image *image = nullptr;
    if (stride == 0) stride = static_cast<std::size_t>(width) * static_cast<std::size_t>(channels);
    check(grad_image_from_pixels(pixels, width, height, channels, stride, &image));
    return Image(image);
  }
  /* Takes ownership of a C image. */
  explicit Image(grad_image *image) noexcept : image_(image) {}

  int width() const noexcept { return grad_image_width(get()); }
  int height() const noexcept { return grad_image_height(get()); }
  int channels() const noexcept { return grad_image_channels(get()); }
  /* Row-major pixels, width * channels bytes a row. */
  Span<const std::uint8_t> pixels() const noexcept {
    return {grad_image_pixels(get()), static_cast<std::size_t>(width()) * height() * channels()};
  }
  Image resized(int width, int height, grad_resize_filter filter = GRAD_RESIZE_BILINEAR) const {
    grad_image *out = nullptr;
    check(grad_image_resize(get(), width, height, filter, &out));
    return Image(out);
  }
  /* Written atomically. */
  void save_png(std::string_view path) const {
    check(grad_image_save_png(get(), std::string(path).c_str()));
  }
  grad_image *get() const noexcept { return image_.get(); }

 private:
  detail::Owned<grad_image, grad_image_free> image_;
};

/* What scoring one image produced. */
class Result {
 public:
  explicit Result(grad_result *result) noexcept : result_(result) {}
  double score() const noexcept { return grad_result_score(get()); }
  double normalized_score() const noexcept { return grad_result_normalized_score(get()); }
  bool anomalous() const noexcept { return grad_result_is_anomalous(get()) != 0; }
  int width() const noexcept { return grad_result_width(get()); }
  int height() const noexcept { return grad_result_height(get()); }
  /* The anomaly map at the scored image's size, row-major. */
  Span<const float> map() const noexcept { return {grad_result_map(get()), pixels()}; }
  /* The predicted defect mask (0 or 255); empty when the model has no pixel threshold. */
  Span<const std::uint8_t> mask() const noexcept {
    const std::uint8_t *mask = grad_result_mask(get());
    return {mask, mask ? pixels() : 0};
  }
  grad_result *get() const noexcept { return result_.get(); }

 private:
  std::size_t pixels() const noexcept { return static_cast<std::size_t>(width()) * height(); }
  detail::Owned<grad_result, grad_result_free> result_;
};

/* grad_backbone_options, grad_model_options and grad_train_options with
 * their defaults (a model's options point to backbone options that must
 * outlive them: keep both in the same scope). */
inline grad_backbone_options backbone_options() {
  grad_backbone_options options;
  grad_backbone_options_init(&options, sizeof options);
  return options;
}
inline grad_model_options model_options() {
  grad_model_options options;
  grad_model_options_init(&options, sizeof options);
  return options;
}
inline grad_train_options train_options() {
  grad_train_options options;
  grad_train_options_init(&options, sizeof options);
  return options;
}

/* Called after every training step; return false to stop (cancel). */
using TrainProgress = std::function<bool(const grad_train_progress &)>;

/* A trained or loaded model: read-only, shared by any number of threads. */
class Model {
 public:
  static Model load(std::string_view path) {
    grad_model *model = nullptr;
    check(grad_model_load(std::string(path).c_str(), &model));
    return Model(model);
  }

  /*
   * Training, as grad_model_train, _files and _images. Folders and files
   * are any range of strings (std::vector<std::string>, a braced list of
   * literals, ...). progress, when given, replaces train.progress. A run
   * stopped by progress returns the model of the last completed step
   * (cancelled() is then true) rather than throwing: that model is usable
   * and saveable (train.h).
   */
  template <typename Strings>
  static Model train_folders(const Strings &folders,
                             const grad_model_options &options = model_options(),
                             grad_train_options train = train_options(),
                             TrainProgress progress = {}) {
    detail::CStrings c(folders);
    return run(train, progress, [&](const grad_train_options *t, grad_model **out) {
      return grad_model_train(&options, t, c.data(), static_cast<int>(c.size()), out);
    });
  }
  static Model train_folders(std::initializer_list<std::string_view> folders,
                             const grad_model_options &options = model_options(),
                             grad_train_options train = train_options(),
                             TrainProgress progress = {}) {
    return train_folders<std::initializer_list<std::string_view>>(folders, options, train,
                                                                  std::move(progress));
  }
  template <typename Strings>
  static Model train_files(const Strings &files,
                           const grad_model_options &options = model_options(),
                           grad_train_options train = train_options(),
                           TrainProgress progress = {}) {
    detail::CStrings c(files);
    return run(train, progress, [&](const grad_train_options *t, grad_model **out) {
      return grad_model_train_files(&options, t, c.data(), c.size(), out);
    });
  }
  static Model train_images(Span<const Image> images,
                            const grad_model_options &options = model_options(),
                            grad_train_options train = train_options(),
                            TrainProgress progress = {}) {
    std::vector<const grad_image *> c;
    for (const Image &image : images) c.push_back(image.get());
    return run(train, progress, [&](const grad_train_options *t, grad_model **out) {
      return grad_model_train_images(&options, t, c.data(), c.size(), out);
    });
  }

  /* Takes ownership of a C model. */
  explicit Model(grad_model *model) noexcept : model_(model) {}

  /* Saved atomically. */
  void save(std::string_view path) const {
    check(grad_model_save(get(), std::string(path).c_str()));
  }
  int input_size() const noexcept { return grad_model_input_size(get()); }
  double image_threshold() const noexcept { return grad_model_image_threshold(get()); }
  std::string_view description() const noexcept { return grad_model_description(get()); }
  /* A provenance value (model.h lists the keys), or nothing. */
  std::optional<std::string_view> provenance(std::string_view key) const {
    const char *value = grad_model_provenance(get(), std::string(key).c_str());
    if (!value) return std::nullopt;
    return std::string_view(value);
  }
  /* Training was stopped by its progress callback. */
  bool cancelled() const { return provenance("status") == std::optional<std::string_view>("cancelled"); }
  grad_model *get() const noexcept { return model_.get(); }

 private:
  struct Hook {
    TrainProgress *progress;
  };
  static int trampoline(const grad_train_progress *p, void *user) {
    TrainProgress &progress = *static_cast<Hook *>(user)->progress;
    try {
      return progress(*p) ? 0 : 1;
    } catch (...) {
      return 1; /* an exception must not cross the C library: stop instead */
    }
  }
  template <typename Call>
  static Model run(grad_train_options &train, TrainProgress &progress, Call call) {
    Hook hook{&progress};
    if (progress) {
      train.progress = trampoline;
      train.progress_user = &hook;
    }
    grad_model *model = nullptr;
    grad_status status = call(&train, &model);
    if (status == GRAD_E_CANCELLED && model) return Model(model);
    check(status);
    return Model(model);
  }
  detail::Owned<grad_model, grad_model_free> model_;
};

/* Per-thread scoring scratch of one model; the model must outlive it. */
class Context {
 public:
  explicit Context(const Model &model) : model_(model.get()) {
    grad_context *ctx = nullptr;
    check(grad_context_create(model_, &ctx));
    ctx_.reset(ctx);
  }
  Result score(const Image &image) {
    grad_result *result = nullptr;
    check(grad_model_score(model_, ctx_.get(), image.get(), &result));
    return Result(result);
  }
  /* As score() on each image, faster (grad_model_score_batch). */
  std::vector<Result> score_batch(Span<const Image> images) {
    std::vector<const grad_image *> c;
    for (const Image &image : images) c.push_back(image.get());
    std::vector<grad_result *> raw(c.size(), nullptr);
    check(grad_model_score_batch(model_, ctx_.get(), c.data(), c.size(), raw.data()));
    std::vector<Result> results;
    results.reserve(raw.size());
    for (grad_result *r : raw) results.emplace_back(r);
    return results;
  }
  grad_context *get() const noexcept { return ctx_.get(); }

 private:
  const grad_model *model_;
  detail::Owned<grad_context, grad_context_free> ctx_;
};

/* The heatmap overlay of a result over its image (grad_overlay_render). */
inline Image overlay(const Model &model, const Image &image, const Result &result) {
  grad_image *out = nullptr;
  check(grad_overlay_render(model.get(), image.get(), result.get(), &out));
  return Image(out);
}

}  // namespace grad

#endif /* GRAD_GRAD_HPP */
