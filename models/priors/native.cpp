#include "models/priors/native.h"

#include <sstream>

#include "src/error.h"
#include "src/registry.h"

namespace tessera {

namespace {

// Checks that `owned` lies in the (L, H, W) array and returns the sub-array the
// terms of the owned pixels read: owned plus one row below and one column to
// the right where the array has them.
torch::Tensor owned_neighbourhood(const torch::Tensor& object, const Rect& owned, const std::string& who) {
  TESSERA_REQUIRE(Error, object.dim() == 3, who, ": the object must be (L, H, W), got shape ", object.sizes());
  const Rect bounds{0, 0, object.size(1), object.size(2)};
  TESSERA_REQUIRE(Error, bounds.contains(owned), who, ": owned region ", owned.str(), " is outside the ",
                  object.size(1), " x ", object.size(2), " array");
  const int64_t y1 = std::min(owned.y1() + 1, object.size(1));
  const int64_t x1 = std::min(owned.x1() + 1, object.size(2));
  return object.slice(1, owned.y0, y1).slice(2, owned.x0, x1);
}

// Forward differences of f over the owned pixels: (L, h, w) each, where
// (h, w) is the owned size; zero where the neighbour is outside the array.
std::pair<torch::Tensor, torch::Tensor> forward_differences(const torch::Tensor& f, const Rect& owned) {
  auto pad_to = [](torch::Tensor d, int64_t dim, int64_t n) {
    if (d.size(dim) == n) return d;
    auto shape = d.sizes().vec();
    shape[dim] = n - d.size(dim);
    return torch::cat({d, torch::zeros(shape, d.options())}, dim);
  };
  const int64_t h = owned.h, w = owned.w;
  auto dy = (f.slice(1, 1) - f.slice(1, 0, f.size(1) - 1)).slice(2, 0, w);
  auto dx = (f.slice(2, 1) - f.slice(2, 0, f.size(2) - 1)).slice(1, 0, h);
  return {pad_to(dy, 1, h), pad_to(dx, 2, w)};
}

torch::Tensor abs2(const torch::Tensor& z) { return z.is_complex() ? torch::view_as_real(z).pow(2).sum(-1) : z * z; }

}  // namespace

TotalVariationPrior::TotalVariationPrior(double phase_weight, double amplitude_weight, double epsilon)
    : phase_weight_(phase_weight), amplitude_weight_(amplitude_weight), epsilon_(epsilon) {
  TESSERA_REQUIRE(SettingsError, phase_weight >= 0 && amplitude_weight >= 0 && phase_weight + amplitude_weight > 0,
                  "total variation needs non-negative phase and amplitude weights, not both zero; got ", phase_weight,
                  " and ", amplitude_weight);
  TESSERA_REQUIRE(SettingsError, epsilon > 0, "total variation smoothing epsilon must be > 0, got ", epsilon);
}

std::string TotalVariationPrior::name() const {
  if (amplitude_weight_ == 0) return "tv-phase";
  if (phase_weight_ == 0) return "tv-amplitude";
  return "tv";
}

torch::Tensor TotalVariationPrior::penalty(const torch::Tensor& object, const Rect& owned) {
  TESSERA_REQUIRE(Error, object.is_complex(), name(), ": the object must be complex, got ", object.dtype());
  auto sub = owned_neighbourhood(object, owned, name());
  if (owned.empty()) return torch::zeros({}, torch::TensorOptions().dtype(torch::real(sub).scalar_type()).device(sub.device()));
  // delta keeps the amplitude and the phasor differentiable where O = 0.
  const double delta = 1e-6;
  auto amplitude = torch::sqrt(abs2(sub) + delta * delta);
  const double eps2 = epsilon_ * epsilon_;
  auto total = torch::zeros({}, amplitude.options());
  if (phase_weight_ > 0) {
    auto [dy, dx] = forward_differences(sub / amplitude, owned);
    total = total + phase_weight_ * (torch::sqrt(abs2(dy) + abs2(dx) + eps2) - epsilon_).sum();
  }
  if (amplitude_weight_ > 0) {
    auto [dy, dx] = forward_differences(amplitude, owned);
    total = total + amplitude_weight_ * (torch::sqrt(dy * dy + dx * dx + eps2) - epsilon_).sum();
  }
  return total;
}

torch::Tensor SmoothnessPrior::penalty(const torch::Tensor& object, const Rect& owned) {
  auto sub = owned_neighbourhood(object, owned, name());
  auto [dy, dx] = forward_differences(sub, owned);
  return (abs2(dy) + abs2(dx)).sum();
}

namespace {

Registry<PriorInfo>& registry() {
  static Registry<PriorInfo> r = [] {
    Registry<PriorInfo> m("prior", " (a learned one is loaded with --regulariser FILE.pt or --denoiser FILE.pt)");
    m.add({"tv", "total variation of phase and amplitude", [] { return std::make_shared<TotalVariationPrior>(1, 1); }});
    m.add({"tv-phase", "total variation of the phase", [] { return std::make_shared<TotalVariationPrior>(1, 0); }});
    m.add({"tv-amplitude", "total variation of the amplitude",
           [] { return std::make_shared<TotalVariationPrior>(0, 1); }});
    m.add({"smooth", "quadratic gradient (Gaussian smoothness)", [] { return std::make_shared<SmoothnessPrior>(); }});
    return m;
  }();
  return r;
}

}  // namespace

void register_prior(PriorInfo info) { registry().add(std::move(info)); }

std::shared_ptr<Prior> make_builtin_prior(const std::string& name) { return registry().get(name).make(); }

std::vector<std::string> prior_names() { return registry().names(); }

std::string builtin_prior_names() { return registry().listed(); }

}  // namespace tessera
