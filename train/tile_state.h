#pragma once
// The state a Reconstruction keeps per local tile, shared by the files that
// implement its jobs (set-up, probe start, learning rates, position
// refinement, the step, resume): internal to the engine (not installed).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "models/object_constraints.h"
#include "models/phase_ramp.h"
#include "models/probe_init.h"
#include "models/propagation.h"
#include "models/zero_order.h"
#include "src/comm/communicator.h"
#include "src/comm/setup_agreement.h"
#include "src/error.h"
#include "src/ops/patches.h"
#include "train/frame_chunks.h"
#include "train/reconstruction.h"

namespace tessera {

struct Reconstruction::TileState {
  Tile tile;
  PtychoModel model{nullptr};
  // (n, 2) window corners relative to the tile's extent. With position
  // correction a leaf that collects each pattern's position gradient; the
  // positions themselves live in Reconstruction::positions_ (every rank holds
  // all of them, so a pattern can change tile without moving any state).
  torch::Tensor positions;
  torch::Tensor frames;     // (n, h, w) measured intensities, FFT order
  std::vector<bool> touches_halo;  // per local pattern: its window reaches beyond the owned region
  std::unique_ptr<torch::optim::Optimizer> object_optimizer, probe_optimizer;
  // Object gauge (models/phase_ramp.h): the neighbour pairs this tile counts.
  torch::Tensor ramp_weight_y, ramp_weight_x;
};

}  // namespace tessera
