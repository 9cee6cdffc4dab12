#include "models/priors/torchscript.h"

#include <filesystem>
#include <sstream>

#include <torch/script.h>

#include "src/error.h"

namespace tessera {

namespace {

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

// The first lines of a TorchScript error, without the C++ backtrace.
std::string brief(const std::string& what, size_t max_chars = 800) {
  std::string s = what;
  if (s.size() > max_chars) s = s.substr(0, max_chars) + " ...";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string exception_text(const std::exception& e) {
  if (auto c = dynamic_cast<const c10::Error*>(&e)) return brief(c->what_without_backtrace());
  return brief(e.what());
}

}  // namespace

torch::Tensor complex_to_channels(const torch::Tensor& object) {
  TESSERA_REQUIRE(Error, object.is_complex() && object.dim() == 3,
                  "a prior needs a complex (L, H, W) object, got ", object.dtype(), " ", shape_str(object.sizes()));
  return torch::view_as_real(object).permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor channels_to_complex(const torch::Tensor& channels) {
  TESSERA_REQUIRE(Error, channels.dim() == 4 && channels.size(1) == 2,
                  "expected (L, 2, H, W) real/imaginary channels, got ", shape_str(channels.sizes()));
  return torch::view_as_complex(channels.permute({0, 2, 3, 1}).contiguous());
}

// A loaded TorchScript module and the checks of the tensor convention.
class TorchScriptModel {
 public:
  enum class Role { Regulariser, Denoiser };

  TorchScriptModel(const std::string& path, Role role) : path_(path), role_(role) {
    namespace fs = std::filesystem;
    const std::string what = role == Role::Denoiser ? "denoiser" : "regulariser";
    std::error_code ec;
    const bool found = fs::exists(path, ec);
    TESSERA_REQUIRE(SettingsError, !ec, what, " model ", path, ": cannot be accessed: ", ec.message());
    TESSERA_REQUIRE(SettingsError, found, what, " model ", path, ": file not found");
    TESSERA_REQUIRE(SettingsError, !fs::is_directory(path, ec), what, " model ", path,
                    ": is a directory, not a TorchScript file");
    try {
      module_ = torch::jit::load(path, torch::kCPU);
    } catch (const std::exception& e) {
      throw DataError(path + ": is not a TorchScript file that LibTorch " + std::string(TORCH_VERSION) +
                      " can load (save the model with torch.jit.save(torch.jit.script(model), path)): " +
                      exception_text(e));
    }
    if (!module_.find_method("forward")) {
      std::string methods;
      for (const auto& m : module_.get_methods()) methods += (methods.empty() ? "" : ", ") + m.name();
      throw DataError(path + ": the TorchScript module has no forward method (methods: " +
                      (methods.empty() ? std::string("none") : methods) +
                      "); a " + what + " must define forward(x) with x a (L, 2, H, W) tensor");
    }
    module_.eval();
    for (auto p : module_.parameters()) p.set_requires_grad(false);
    module_.to(torch::kFloat32);
    // Check the convention on a small smooth test object.
    auto yy = torch::linspace(0, 1, 32, torch::kFloat32).view({32, 1});
    auto xx = torch::linspace(0, 1, 32, torch::kFloat32).view({1, 32});
    auto phase = 0.5 * torch::sin(6 * yy) * torch::cos(5 * xx);
    auto amp = 0.9 + 0.1 * torch::cos(7 * xx + 3 * yy);
    auto test = torch::stack({amp * torch::cos(phase), amp * torch::sin(phase)}).unsqueeze(0);  // (1, 2, 32, 32)
    if (role == Role::Regulariser) {
      test.requires_grad_(true);
      auto out = run(test, /*scalar_allowed=*/true);
      scalar_output_ = out.dim() == 0;
      TESSERA_REQUIRE(DataError, out.requires_grad(), path,
                      ": the regulariser's output does not depend differentiably on its input (no gradient "
                      "reaches x), so it cannot steer the reconstruction");
    } else {
      torch::NoGradGuard no_grad;
      run(test, false);
    }
  }

  bool scalar_output() const { return scalar_output_; }
  const std::string& path() const { return path_; }

  // Calls forward on x (L, 2, H, W) and checks the output: (L, 2, H, W) for a
  // denoiser; (L, H, W) or, when scalar_allowed, 0-dim for a regulariser.
  torch::Tensor run(const torch::Tensor& x, bool scalar_allowed) {
    if (x.scalar_type() != dtype_ || x.device() != device_) {
      module_.to(x.device(), x.scalar_type());
      dtype_ = x.scalar_type();
      device_ = x.device();
    }
    const bool denoiser = role_ == Role::Denoiser;
    c10::IValue out;
    try {
      out = module_.forward({x});
    } catch (const std::exception& e) {
      throw DataError(path_ + ": forward failed on a " + shape_str(x.sizes()) + " " +
                      std::string(c10::toString(x.scalar_type())) + " input (real/imaginary channels, see " +
                      "models/priors/torchscript.h): " + exception_text(e));
    }
    const std::string expected =
        denoiser ? "a denoiser must return a tensor of the input's shape (L, 2, H, W) = " + shape_str(x.sizes())
                 : "a regulariser must return a 0-dim scalar or a per-pixel map (L, H, W) = " +
                       shape_str({x.size(0), x.size(2), x.size(3)});
    TESSERA_REQUIRE(DataError, out.isTensor(), path_, ": forward returned a ", out.tagKind(), ", not a tensor; ",
                    expected);
    auto t = out.toTensor();
    const bool shape_ok =
        denoiser ? t.sizes() == x.sizes()
                 : (t.dim() == 0 && scalar_allowed) ||
                       t.sizes() == c10::IntArrayRef({x.size(0), x.size(2), x.size(3)});
    TESSERA_REQUIRE(DataError, shape_ok, path_, ": forward returned shape ", shape_str(t.sizes()), " for an input of shape ",
                    shape_str(x.sizes()), "; ", expected);
    TESSERA_REQUIRE(DataError, t.scalar_type() == x.scalar_type(), path_, ": forward returned dtype ",
                    c10::toString(t.scalar_type()), " for a ", c10::toString(x.scalar_type()),
                    " input; the output must have the input's dtype");
    TESSERA_REQUIRE(DataError, torch::isfinite(t.detach()).all().item<bool>(), path_,
                    ": forward returned non-finite values (NaN or infinity) for a ", shape_str(x.sizes()), " input");
    return t;
  }

 private:
  std::string path_;
  Role role_;
  torch::jit::Module module_;
  c10::ScalarType dtype_ = torch::kFloat32;
  torch::Device device_ = torch::kCPU;
  bool scalar_output_ = false;
};

TorchScriptRegulariser::TorchScriptRegulariser(const std::string& path)
    : model_(std::make_unique<TorchScriptModel>(path, TorchScriptModel::Role::Regulariser)) {}
TorchScriptRegulariser::~TorchScriptRegulariser() = default;

std::string TorchScriptRegulariser::name() const { return "regulariser " + model_->path(); }

torch::Tensor TorchScriptRegulariser::penalty(const torch::Tensor& object, const Rect& owned) {
  TESSERA_REQUIRE(Error, object.is_complex() && object.dim() == 3, name(), ": the object must be complex (L, H, W)");
  const Rect bounds{0, 0, object.size(1), object.size(2)};
  TESSERA_REQUIRE(Error, bounds.contains(owned), name(), ": owned region ", owned.str(), " is outside the array");
  if (model_->scalar_output()) {
    // A scalar of the whole input cannot be split per pixel: evaluate it on
    // the owned region (the whole array when there is one tile).
    auto part = owned == bounds ? object : object.slice(1, owned.y0, owned.y1()).slice(2, owned.x0, owned.x1());
    auto out = model_->run(complex_to_channels(part), true);
    TESSERA_REQUIRE(DataError, out.dim() == 0, model_->path(), ": forward returned shape ", shape_str(out.sizes()),
                    " but a 0-dim scalar for the test input; it must return the same kind of output every time");
    return out;
  }
  auto map = model_->run(complex_to_channels(object), false);
  return map.slice(1, owned.y0, owned.y1()).slice(2, owned.x0, owned.x1()).sum();
}

TorchScriptDenoiser::TorchScriptDenoiser(const std::string& path)
    : model_(std::make_unique<TorchScriptModel>(path, TorchScriptModel::Role::Denoiser)) {}
TorchScriptDenoiser::~TorchScriptDenoiser() = default;

std::string TorchScriptDenoiser::name() const { return "denoiser " + model_->path(); }

torch::Tensor TorchScriptDenoiser::denoise(const torch::Tensor& object) {
  torch::NoGradGuard no_grad;
  return channels_to_complex(model_->run(complex_to_channels(object), false));
}

}  // namespace tessera
