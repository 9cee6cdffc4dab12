#pragma once
// Everything a reconstruction run is configured with; recorded in the result file.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/object_constraints.h"

namespace tessera {

// Adam's epsilon, in RMS of the current gradient, when the settings leave it
// out (Reconstruction::set_adam_epsilons, scripts/sim/baseline_tables.md).
constexpr double kDefaultAdamEpsilonScale = 3;

struct ReconstructionSettings {
  int iterations = 100;
  std::string optimizer = "adam";
  std::string loss = "amplitude";
  double object_rate = 0;   // learning rate of the object; 0 = derived from the data
  double probe_rate = 0;    // learning rate of the probe; 0 = derived from the data
  double rate_scale = 1;    // multiplies both derived rates
  // Adam's epsilon is this times the RMS of each parameter's current
  // gradient (Reconstruction::set_adam_epsilons says why); 0: Adam's own
  // 1e-8. Unset: kDefaultAdamEpsilonScale with Adam.
  std::optional<double> adam_epsilon_scale;
  int probe_from = 0;       // iteration (0-based) from which the probe is refined; -1 = never
  int64_t batch_size = 0;   // patterns per optimiser step over all tiles; 0 = automatic
  int64_t chunk_size = 64;  // patterns per forward/backward pass (bounds memory)
  uint64_t seed = 1;        // mini-batch order
  int tiles = 1;            // number of tiles (grid chosen automatically) ...
  int tiles_y = 0, tiles_x = 0;  // ... or an explicit grid
  int64_t probe_modes = 1;
  // After each iteration, fix the phase ramp the data cannot see
  // (models/phase_ramp.h): "beam" centres the probe's far field on the zero
  // order, "object" leaves the object no mean ramp over the scan's interior,
  // "auto" is beam when the zero order is known without the specimen (file or
  // --zero-order) and object when it is estimated from the data; "off".
  std::string phase_ramp_gauge = "auto";
  // When the probe is estimated from the data (no usable guess in the file),
  // where its defocus starts: "parallax" reads it from the shift of the
  // shadow image across the direct beam (models/defocus_estimate.h) and falls
  // back to the search below when the data show none; "search" always runs
  // the search; "focused" starts from the zero-phase probe.
  std::string defocus_start = "parallax";
  // The search: try
  // these defocus values (radians of far-field phase at the aperture edge) for a
  // few iterations each and start from the best: the mean pattern gives the
  // aperture but no phase, and a focused start can stall (SGD, RMSprop).
  // Empty = no search.
  std::vector<double> defocus_candidates{-16, -8, -4, 0, 4, 8, 16};
  int defocus_search_iterations = 2;
  int orthogonalise_every = 1;  // re-orthogonalise the probe modes every N iterations (0 = never)
  // Multislice: object slices and the distance between consecutive slices (metres).
  int64_t slices = 1;
  double slice_thickness_m = 0;
  // Position correction: scan positions refined from this iteration (-1 = never),
  // by their own optimiser, with a learning rate in pixels (0 = default).
  int positions_from = -1;
  std::string position_optimizer = "adam";
  double position_rate = 0;
  double position_limit_px = 0;  // largest move from the measured position (0 = a quarter window)
  // Every N iterations of position correction, each pattern also tries its
  // position moved by one pixel in each direction and keeps the best (0 = never):
  // gradients alone stall in local minima about a pixel wide.
  int position_search_every = 5;
  ObjectConstraints object_constraints;
  bool use_file_probe = true;  // start from the file's probe guess when it has one
  int threads = 0;          // 0 = OMP_NUM_THREADS or every core
  std::string device = "cpu";
  std::string precision = "float";  // float or double
  int checkpoint_every = 10;  // write the result file every N iterations (0 = only at the end)
  bool quiet = false;

  // key = value lines, stored in the result file and printed at the start.
  std::string describe() const;
};

}  // namespace tessera
