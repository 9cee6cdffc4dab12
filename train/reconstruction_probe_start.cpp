// The probe start: from the file, from the data (focused, or at the defocus the shadow parallax shows), or by the defocus search.
#include "train/probe_starts.h"
#include "train/reconstruction.h"
#include "train/tile_state.h"

namespace tessera {

bool Reconstruction::start_from_estimated_defocus(const ProbeStartContext& start) {
  const double radius = start.aperture_radius_px;
  // Every rank reads the same central block of the scan, but only rank 0's
  // answer is used, so that no rounding difference can split the ranks.
  const auto& positions = problem_.scan.positions_px;
  const auto idx = central_positions(positions);
  auto frames = read_frames(idx).to(torch::kFloat64).cpu();
  auto block = positions.to(torch::kFloat64).cpu().index_select(0, torch::tensor(idx, torch::kInt64));
  defocus_estimate_ = estimate_defocus(frames, valid_fft_.cpu(), block, start.centre, radius);
  auto answer = torch::tensor({defocus_estimate_->reliable ? 1.0 : 0.0, defocus_estimate_->edge_phase_rad},
                              torch::kFloat64);
  if (comm_ && comm_->size() > 1) {
    if (comm_->rank() != 0) answer.zero_();
    comm_->allreduce_sum(answer).wait();
  }
  if (answer[0].item<double>() == 0) return false;
  defocus_estimate_->reliable = true;
  defocus_estimate_->edge_phase_rad = answer[1].item<double>();
  reset(add_defocus(start.focused_probe, defocus_estimate_->edge_phase_rad, radius, start.centre));
  return true;
}

void Reconstruction::reset(const torch::Tensor& probe) {
  torch::NoGradGuard no_grad;
  for (auto& wk : tile_states_) {
    const auto& e = wk->tile.extent;
    auto object = torch::ones({settings_.slices, e.h, e.w}, probe.options());
    wk->model = PtychoModel(object, probe.clone(), slice_transfer_);
  }
  if (position_optimizer_info_) {
    positions_.copy_(measured_positions_);
    problem_.scan.positions_px = positions_.detach().to(torch::kFloat64).cpu().contiguous();
    *tiling_ = tiling_->reassigned(problem_.scan);
    for (auto& wk : tile_states_) {
      // Back to the patterns (and frames) each tile started with.
      const auto& now = tiling_->tile(wk->tile.index).positions;
      if (now != wk->tile.positions) wk->frames = read_frames(now);
      wk->tile = tiling_->tile(wk->tile.index);
      update_tile_positions(*wk);
    }
    patterns_moved_ = 0;
  }
  iteration_ = 0;
  collective_wait_seconds_ = 0;
  derive_learning_rates();
  make_optimizers();
}

void Reconstruction::search_probe_defocus(const ProbeStartContext& start) {
  // The mean pattern fixes the probe's aperture but not its phase. A few
  // iterations from each candidate defocus tell them apart by the data loss
  // (a flat object alone cannot: every candidate fits it equally); every rank
  // sees the same summed losses and so picks the same candidate.
  const auto& base = start.focused_probe;
  const auto& centre = start.centre;
  const double radius = start.aperture_radius_px;
  double best = 0, best_loss = std::numeric_limits<double>::infinity();
  defocus_losses_.clear();
  for (double c : settings_.defocus_candidates) {
    reset(add_defocus(base, c, radius, centre));
    double loss = std::numeric_limits<double>::infinity();
    try {
      for (int i = 0; i < settings_.defocus_search_iterations; ++i) loss = iterate().loss;
    } catch (const Error&) {  // a candidate that diverges is simply not chosen
    }
    if (!std::isfinite(loss)) loss = std::numeric_limits<double>::infinity();
    defocus_losses_.emplace_back(c, loss);
    if (loss < best_loss) best_loss = loss, best = c;
  }
  reset(add_defocus(base, best, radius, centre));
}

void Reconstruction::initialise_probe_and_object() {
  const auto& s = settings_;
  const auto& scan = problem_.scan;
  const torch::Device device(s.device);
  const auto complex_dtype = real_dtype_ == torch::kFloat64 ? torch::kComplexDouble : torch::kComplexFloat;
  // Mean measured pattern (FFT order) over every frame of every rank: the
  // probe estimate, and the direct beam's region for the gauge.
  auto sum = torch::zeros({scan.frame_h, scan.frame_w}, torch::kFloat64);
  for (auto& wk : tile_states_) sum += wk->frames.sum(0).to(torch::kFloat64).cpu();
  if (comm_ && comm_->size() > 1) comm_->allreduce_sum(sum).wait();
  auto mean = sum / static_cast<double>(scan.num_positions());
  mean = torch::where(valid_fft_.cpu(), mean, torch::zeros_like(mean));
  const auto rest = zero_order_rest(zero_order_);
  gauge_rest_ = rest;
  torch::Tensor probe;
  if (s.use_file_probe && problem_.probe_guess) {
    probe = problem_.probe_guess->to(torch::kComplexDouble);
    TESSERA_REQUIRE(DataError, probe.size(-2) == scan.frame_h && probe.size(-1) == scan.frame_w, problem_.source,
                    ": probe guess is ", probe.size(-2), " x ", probe.size(-1), " but frames are ", scan.frame_h,
                    " x ", scan.frame_w);
    if (probe.size(0) < s.probe_modes) {  // extra modes as small perturbations of the first
      // (the far field is in FFT order already, as probe_from_mean_pattern takes it)
      auto extra = probe_from_mean_pattern(torch::view_as_real(far_field(probe[0])).pow(2).sum(-1).to(torch::kFloat32),
                                           s.probe_modes);
      probe = torch::cat({probe, extra.slice(0, probe.size(0)).to(probe.dtype())});
    }
    probe = probe.slice(0, 0, s.probe_modes);
    // A guess from an instrument model or another program has its own units:
    // the Siemens star's is ~100x too weak in amplitude for its counts, and
    // the first iterations went into the scale (half-scan FRC 185 nm, 119 nm
    // scaled). Rescaled so that its far-field power is the mean pattern's (as
    // the estimate from the mean pattern is), unless it is within 2x of that
    // already: a guess in the data's units keeps them, and with them the
    // object's amplitude as the specimen's transmission. The power is taken
    // over the pixels measured, as the mean is (a beamstop hides some).
    const auto intensity = torch::view_as_real(far_field(probe)).pow(2).sum(std::vector<int64_t>{0, -1});
    const double power = torch::where(valid_fft_.cpu(), intensity, torch::zeros_like(intensity)).sum().item<double>();
    const double counts = mean.sum().item<double>();
    TESSERA_REQUIRE(DataError, power > 0 && std::isfinite(power), problem_.source,
                    ": the probe guess in the file is zero or not finite everywhere; remove it or start from the data "
                    "(--no-file-probe)");
    if (counts > 0 && (counts > 2 * power || power > 2 * counts)) {
      probe_guess_scale_ = std::sqrt(counts / power);
      probe = probe * probe_guess_scale_;
    }
    // A probe guess, from the file or the electron optics, is centred on its
    // own far field; the data's zero order is rarely there. Tilt it onto the
    // zero order (sub-pixel rest; the whole pixels are in the frames' shift).
    const auto now = far_field_centre(probe);
    probe_tilt_px_ = {rest.first - now.first, rest.second - now.second};
    probe = tilt_probe(probe, probe_tilt_px_);
  } else {
    probe = probe_from_mean_pattern(mean, s.probe_modes);
  }
  probe = probe.to(complex_dtype).to(device);
  if (s.slices > 1) {
    const auto& g = problem_.experiment;
    slice_transfer_ = fresnel_transfer_function(scan.frame_h, scan.frame_w, g.pixel_y_m(), g.pixel_x_m(),
                                                g.wavelength_m, s.slice_thickness_m, complex_dtype);
  }
  for (auto& wk : tile_states_) {
    const auto& e = wk->tile.extent;
    auto object = torch::ones({s.slices, e.h, e.w}, torch::TensorOptions().dtype(complex_dtype).device(device));
    wk->model = PtychoModel(object, probe.clone(), slice_transfer_);
  }
}

}  // namespace tessera
