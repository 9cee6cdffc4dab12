// C++ API of tessera::window_far_field_loss (calls through the dispatcher)
// and the device-independent part of its kernels: validation, the FFTs, the
// fixed-order sums.
#include "src/ops/window_loss.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>

#include "src/ops/loss_measurement.h"
#include "src/ops/ops_internal.h"

namespace tessera::ops {
namespace {

constexpr const char* kOp = "tessera::window_far_field_loss";

const std::vector<std::pair<std::string, PixelForm>>& forms() {
  static const std::vector<std::pair<std::string, PixelForm>> f = {
      {"amplitude", PixelForm::amplitude}, {"intensity", PixelForm::intensity}, {"poisson", PixelForm::poisson}};
  return f;
}

PixelForm form_by_name(const std::string& name) {
  for (const auto& [n, f] : forms())
    if (n == name) return f;
  std::string known;
  for (const auto& [n, f] : forms()) known += (known.empty() ? "" : ", ") + n;
  throw SettingsError(::tessera::detail::concat(kOp, ": no per-pixel form of the loss '", name, "' (it has: ",
                                                known, "); other losses run through autograd"));
}

using Outputs = std::tuple<torch::Tensor, torch::Tensor, torch::Tensor>;

}  // namespace

std::vector<std::string> window_loss_forms() {
  std::vector<std::string> names;
  for (const auto& [n, f] : forms()) names.push_back(n);
  return names;
}

Outputs window_far_field_loss_with_gradients(const torch::Tensor& windows, const torch::Tensor& probe,
                                             const torch::Tensor& measured, const torch::Tensor& valid,
                                             const torch::Tensor& rows, const std::string& loss, double weight,
                                             bool gradients) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tessera::window_far_field_loss", "")
                       .typed<Outputs(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
                                      c10::string_view, double, bool)>();
  auto optional = [](const torch::Tensor& t) { return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt; };
  return op.call(windows, probe, measured, optional(valid), optional(rows), loss, weight, gradients);
}

torch::Tensor window_far_field_loss(const torch::Tensor& windows, const torch::Tensor& probe,
                                    const torch::Tensor& measured, const torch::Tensor& valid,
                                    const torch::Tensor& rows, const std::string& loss, double weight) {
  return std::get<0>(window_far_field_loss_with_gradients(windows, probe, measured, valid, rows, loss, weight, false));
}

namespace detail {

namespace {

template <typename T>
Outputs run(const torch::Tensor& windows, const torch::Tensor& probe, const LossMeasurement& meas, PixelForm form,
            double weight, bool gradients, const WindowLossLaunchers<T>& launch) {
  const auto& measured = meas.measured;
  const int64_t B = windows.size(0), M = probe.size(0), h = probe.size(1), w = probe.size(2);
  auto real = [](const torch::Tensor& t) { return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr; };
  WindowLossArgs<T> a;
  a.B = B;
  a.M = M;
  a.n = h * w;
  a.probe = real(probe);
  a.windows = real(windows);
  a.measured = real(measured);
  a.rows = meas.rows.defined() ? meas.rows.data_ptr<int64_t>() : nullptr;
  a.keep = real(meas.keep);
  a.keep_stride = meas.keep_stride;
  a.residual = gradients;
  a.weight = static_cast<T>(weight);

  auto waves = torch::empty({B, M, h, w}, probe.options());
  a.waves = real(waves);
  launch.exit_waves(a);
  // The far field in place of the exit waves; LibTorch's FFT (cuFFT on CUDA).
  auto far = torch::fft::fft2(waves, c10::nullopt, {-2, -1}, "ortho").contiguous();
  waves = torch::Tensor();
  a.waves = real(far);
  auto value = torch::empty({B, h * w}, measured.options());
  a.value = real(value);
  launch.far_field_pixels(a, form);
  // Pixels, then patterns, in a fixed order in double (a reduction over a
  // fixed shape: the same order on every run).
  auto loss = (value.to(torch::kFloat64).sum(1).sum() * weight).to(measured.scalar_type());
  if (!gradients) return {loss, torch::empty({0}, probe.options()), torch::empty({0}, probe.options())};
  auto residual = torch::fft::ifft2(far, c10::nullopt, {-2, -1}, "ortho").contiguous();
  far = torch::Tensor();
  a.waves = real(residual);
  auto grad_windows = torch::empty({B, 1, h, w}, probe.options());
  auto grad_probe = torch::empty({M, h, w}, probe.options());
  a.grad_windows = real(grad_windows);
  a.grad_probe = real(grad_probe);
  launch.gradients(a);
  return {loss, grad_windows, grad_probe};
}

}  // namespace

Outputs window_far_field_loss_impl(const torch::Tensor& windows_in, const torch::Tensor& probe_in,
                                   const torch::Tensor& measured_in, const c10::optional<torch::Tensor>& valid,
                                   const c10::optional<torch::Tensor>& rows_in, const std::string& loss,
                                   double weight, bool gradients, const WindowLossLaunchers<float>& f32,
                                   const WindowLossLaunchers<double>& f64) {
  const PixelForm form = form_by_name(loss);
  TESSERA_REQUIRE(Error, probe_in.defined() && probe_in.dim() == 3 && probe_in.is_complex(), kOp,
                  ": the probe must be a complex (modes, h, w) array, got ",
                  probe_in.defined() ? probe_in.sizes() : c10::IntArrayRef{});
  const int64_t h = probe_in.size(1), w = probe_in.size(2);
  TESSERA_REQUIRE(Error, windows_in.defined() && windows_in.dim() == 4 && windows_in.size(1) == 1 &&
                             windows_in.size(2) == h && windows_in.size(3) == w,
                  kOp, ": the object windows must be a (patterns, 1, ", h, ", ", w,
                  ") array (single-slice windows of the probe's size), got ",
                  windows_in.defined() ? windows_in.sizes() : c10::IntArrayRef{});
  TESSERA_REQUIRE(Error, windows_in.scalar_type() == probe_in.scalar_type() &&
                             windows_in.device() == probe_in.device(),
                  kOp, ": the windows (", windows_in.scalar_type(), " on ", windows_in.device(),
                  ") do not match the probe (", probe_in.scalar_type(), " on ", probe_in.device(), ")");
  const auto real_type = c10::toRealValueType(probe_in.scalar_type());
  const auto meas = check_loss_measurement(kOp, windows_in.size(0), h, w, real_type, probe_in.device(), measured_in,
                                           valid.value_or(torch::Tensor()), rows_in.value_or(torch::Tensor()));
  TESSERA_REQUIRE(Error, std::isfinite(weight), kOp, ": the loss weight must be finite, got ", weight);
  const auto windows = windows_in.contiguous(), probe = probe_in.contiguous();
  if (real_type == torch::kFloat32) return run<float>(windows, probe, meas, form, weight, gradients, f32);
  TESSERA_REQUIRE(Error, real_type == torch::kFloat64, kOp, ": complex64 or complex128 data expected, got ",
                  probe_in.scalar_type());
  return run<double>(windows, probe, meas, form, weight, gradients, f64);
}

}  // namespace detail
}  // namespace tessera::ops
