#include "models/ptycho_model.h"

#include "models/far_field_loss.h"
#include "models/propagation.h"
#include "src/error.h"
#include "src/ops/patches.h"
#include "src/ops/window_loss.h"

namespace tessera {

PtychoModelImpl::PtychoModelImpl(torch::Tensor object_, torch::Tensor probe_, torch::Tensor transfer) {
  TESSERA_REQUIRE(Error, object_.dim() == 3 && object_.is_complex(),
                  "object must be a complex (slices, H, W) array, got ", object_.sizes());
  TESSERA_REQUIRE(Error, probe_.dim() == 3 && probe_.is_complex(),
                  "probe must be a complex (modes, h, w) array, got ", probe_.sizes());
  TESSERA_REQUIRE(Error, object_.size(0) == 1 || transfer.defined(),
                  "a multislice object needs the Fresnel transfer function between slices");
  object_real = register_parameter("object", torch::view_as_real(object_).clone());
  probe_real = register_parameter("probe", torch::view_as_real(probe_).clone());
  if (transfer.defined()) slice_transfer = register_buffer("slice_transfer", transfer.to(probe_.device()));
}

torch::Tensor PtychoModelImpl::exit_waves(const torch::Tensor& positions) {
  const int64_t h = frame_h(), w = frame_w();
  auto patches = ops::extract_patches(object(), positions, h, w);  // (B, L, h, w)
  auto psi = probe().unsqueeze(0) * patches.select(1, 0).unsqueeze(1);  // (B, M, h, w)
  for (int64_t l = 1; l < object_real.size(0); ++l)
    psi = propagate(psi, slice_transfer) * patches.select(1, l).unsqueeze(1);
  return psi;
}

torch::Tensor PtychoModelImpl::forward(const torch::Tensor& positions) {
  auto far = far_field(exit_waves(positions));
  // |z|^2 through view_as_real is cheaper than abs().pow(2) and has a clean gradient at 0.
  return torch::view_as_real(far).pow(2).sum({-1, 1});
}

torch::Tensor PtychoModelImpl::data_loss(const torch::Tensor& positions, const torch::Tensor& measured,
                                         const torch::Tensor& valid, const LossInfo& loss, const torch::Tensor& rows,
                                         double weight) {
  auto weighted = [weight](torch::Tensor value) { return weight == 1 ? value : value * weight; };
  const bool on_cpu = object_real.device().is_cpu(), single_slice = object_real.size(0) == 1;
  // Off the CPU: the device-generic op (CUDA kernels, cuFFT) on windows from
  // extract_patches, whose autograd takes the gradient on to object and positions.
  if (!on_cpu && single_slice && !loss.pixelwise.window_form.empty() && positions.size(0) > 0)
    return ops::window_far_field_loss(ops::extract_patches(object(), positions, frame_h(), frame_w()), probe(),
                                      measured, valid, rows, loss.pixelwise.window_form, weight);
  if (!loss.pixelwise.available() || !on_cpu || positions.size(0) == 0) {
    const bool per_frame_mask = rows.defined() && valid.defined() && valid.dim() == 3;
    return weighted(loss.function(forward(positions), rows.defined() ? measured.index_select(0, rows) : measured,
                                  per_frame_mask ? valid.index_select(0, rows) : valid));
  }
  if (!single_slice)
    return weighted(far_field_loss(exit_waves(positions), measured, valid, loss.pixelwise, rows));
  return object_far_field_loss(object(), positions, probe(), measured, valid, loss.pixelwise, rows, weight);
}

}  // namespace tessera
