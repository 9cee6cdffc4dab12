// Resume: the optimiser states saved with a result, and checked before they are restored.
#include <cmath>

#include "train/reconstruction.h"
#include "train/tile_state.h"

namespace tessera {

namespace {

std::string bytes_of(torch::serialize::OutputArchive& archive) {
  std::ostringstream s;
  archive.save_to(s);
  return s.str();
}

void load(torch::serialize::InputArchive& archive, const std::string& bytes) {
  std::istringstream s(bytes);
  archive.load_from(s);
}

std::string serialise(const torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  return bytes_of(archive);
}

std::string serialise(const torch::Tensor& t) {
  torch::serialize::OutputArchive archive;
  archive.write("values", t);
  return bytes_of(archive);
}

// The tensor of `bytes` if it has `like`'s shape and type; undefined otherwise.
torch::Tensor deserialise_like(const std::string& bytes, const torch::Tensor& like) {
  try {
    torch::serialize::InputArchive archive;
    load(archive, bytes);
    torch::Tensor t;
    archive.read("values", t);
    return t.sizes() == like.sizes() && t.scalar_type() == like.scalar_type() ? t : torch::Tensor();
  } catch (const std::exception&) {
    return {};
  }
}

void deserialise(torch::optim::Optimizer& opt, const std::string& bytes) {
  torch::serialize::InputArchive archive;
  load(archive, bytes);
  opt.load(archive);
}

}  // namespace

OptimizerStates Reconstruction::optimizer_states() const {
  OptimizerStates s;
  for (auto& wk : tile_states_) {
    const std::string key = "tile_" + std::to_string(wk->tile.index);
    // L-BFGS keeps tensors that its early exits leave undefined, which
    // torch::optim cannot serialise; its history is rebuilt within a few
    // steps after a resume (so an L-BFGS resume is not bit for bit).
    const bool keep = optimizer_->scaling != StepScaling::LineSearch;
    s[key + "/object"] = keep ? serialise(*wk->object_optimizer) : std::string();
    s[key + "/probe"] = keep ? serialise(*wk->probe_optimizer) : std::string();
    // Adam's epsilon is not kept: set_adam_epsilons takes it from the
    // gradient before every step, a resumed run's first step included.
    // A phase-only object is stored projected onto |O| = 1; the state it
    // continues from is kept here, so that a resume is exact.
    if (settings_.object_constraints.phase_only) s[key + "/object_values"] = serialise(wk->model->object_real);
  }
  if (position_optimizer_) s["scan/positions"] = serialise(*position_optimizer_);
  return s;
}

bool Reconstruction::restore(const torch::Tensor& object, const torch::Tensor& probe, int iteration,
                             const OptimizerStates& states, const torch::Tensor& positions) {
  torch::NoGradGuard no_grad;
  const auto& scan = problem_.scan;
  TESSERA_REQUIRE(DataError, object.dim() == 3 && object.size(1) == scan.object_h && object.size(2) == scan.object_w,
                  "the result to resume holds an object of shape ", object.sizes(), " but this data set needs (L, ",
                  scan.object_h, ", ", scan.object_w, ")");
  TESSERA_REQUIRE(SettingsError, object.size(0) == settings_.slices, "the result to resume holds ", object.size(0),
                  " object slice(s) but this run has --slices ", settings_.slices, "; resume with --slices ",
                  object.size(0));
  const auto run_probe = tile_states_.front()->model->probe().sizes();
  TESSERA_REQUIRE(SettingsError, probe.dim() != 3 || probe.size(0) == run_probe[0],
                  "the result to resume holds ", probe.size(0), " probe mode(s) but this run has --modes ",
                  run_probe[0], "; resume with --modes ", probe.size(0));
  TESSERA_REQUIRE(DataError, probe.sizes() == run_probe, "the result to resume holds a probe of shape ",
                  probe.sizes(), " but the run uses ", run_probe);
  TESSERA_REQUIRE(DataError, iteration >= 0, "the result to resume has a negative iteration count ", iteration);
  // Everything is checked before any state is taken over: the optimisers'
  // steps read their state through raw pointers, sized by the parameter.
  bool states_fit = true;
  for (auto& wk : tile_states_) {
    const std::string key = "tile_" + std::to_string(wk->tile.index);
    auto o = states.find(key + "/object"), p = states.find(key + "/probe");
    if (o == states.end() || p == states.end()) {
      states_fit = false;
      continue;
    }
    try {
      if (!o->second.empty()) deserialise(*wk->object_optimizer, o->second);
      if (!p->second.empty()) deserialise(*wk->probe_optimizer, p->second);
      states_fit = states_fit && optimizer_state_mismatch(*wk->object_optimizer).empty() &&
                   optimizer_state_mismatch(*wk->probe_optimizer).empty();
    } catch (const std::exception&) {
      states_fit = false;
    }
  }
  // One answer for all ranks: a re-tiled resume starts every tile's optimiser afresh.
  states_fit = reduce_max(states_fit ? 0.0 : 1.0) == 0.0;
  if (!states_fit)
    for (auto& wk : tile_states_) {
      wk->object_optimizer = optimizer_->make({wk->model->object_real}, object_rate_);
      wk->probe_optimizer = optimizer_->make({wk->model->probe_real}, probe_rate_);
    }
  if (position_optimizer_) {
    TESSERA_REQUIRE(DataError, positions.defined() && positions.sizes() == positions_.sizes(),
                    "the result to resume holds no refined positions for the ", positions_.size(0), " patterns");
    TESSERA_REQUIRE(DataError, torch::isfinite(positions).all().item<bool>(),
                    "the result to resume holds refined positions that are not finite numbers");
    auto it = states.find("scan/positions");
    TESSERA_REQUIRE(DataError, it != states.end(),
                    "the result to resume has no position optimizer state: it was not run with position correction");
    try {
      deserialise(*position_optimizer_, it->second);
    } catch (const std::exception& e) {
      throw DataError(std::string("the result to resume has a damaged position optimizer state: ") + e.what());
    }
    TESSERA_REQUIRE(DataError, optimizer_state_mismatch(*position_optimizer_).empty(),
                    "the result to resume has a position optimizer state that does not fit this run: ",
                    optimizer_state_mismatch(*position_optimizer_));
    positions_.copy_(positions.to(positions_.options().requires_grad(false)));
  }
  for (auto& wk : tile_states_) {
    const Rect& e = wk->tile.extent;
    auto part = object.slice(1, e.y0, e.y1()).slice(2, e.x0, e.x1());
    wk->model->object_real.copy_(torch::view_as_real(part.to(wk->model->object().dtype()).contiguous()));
    wk->model->probe_real.copy_(torch::view_as_real(probe.to(wk->model->probe().dtype()).contiguous()));
    // The state before the phase-only projection, where the tiling is the same.
    if (auto v = states.find("tile_" + std::to_string(wk->tile.index) + "/object_values");
        states_fit && v != states.end())
      if (auto values = deserialise_like(v->second, wk->model->object_real); values.defined())
        wk->model->object_real.copy_(values);
  }
  if (position_optimizer_) reassign_moved_patterns();
  iteration_ = iteration;
  return states_fit;
}

}  // namespace tessera
