#pragma once
// The reconstruction engine: one or more tiles per process, each a PtychoModel
// over its extent with its own patterns and optimisers; the overlap reduction
// makes every step equal to the undecomposed one (src/tiling.h). One tile in
// one process is the ordinary, undecomposed reconstruction.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "models/defocus_estimate.h"
#include "models/losses.h"
#include "models/prior.h"
#include "models/ptycho_model.h"
#include "src/comm/halo_exchange.h"
#include "src/tiling.h"
#include "train/optimizers.h"
#include "train/scan_problem.h"
#include "train/settings.h"

namespace tessera {

struct ProbeStartContext;

namespace comm {
class Communicator;
}

struct IterationStats {
  int iteration = 0;       // 1-based count of completed iterations
  double loss = 0;         // data loss per pattern, over all patterns
  double seconds = 0;      // wall time of the iteration
  double wait_seconds = 0; // of which blocked on communication (halo exchange and collectives)
};

// Serialised optimiser state of each local tile (for --resume).
using OptimizerStates = std::map<std::string, std::string>;

class Reconstruction {
 public:
  Reconstruction(ScanProblem problem, ReconstructionSettings settings,
                 std::shared_ptr<comm::Communicator> comm = nullptr);
  ~Reconstruction();

  // Adds a prior (regulariser or denoiser); several may be added.
  void add_prior(std::shared_ptr<Prior> prior, PriorSettings settings);

  IterationStats iterate();
  int iteration() const { return iteration_; }
  // Drops this process's measured frames once no iteration follows, so that
  // writing and scoring the result do not add to the run's peak memory;
  // iterate() then refuses to run.
  void release_frames();

  // Whole object (L, H, W) and probe (M, h, w), complex. With several ranks the
  // object is gathered on rank 0 (other ranks get an undefined tensor).
  torch::Tensor object() const;
  torch::Tensor probe() const;

  // Resume support: the complete state of this process.
  OptimizerStates optimizer_states() const;
  // positions: the refined positions (N, 2), needed when positions are refined.
  // Every array is checked against this run before it is used (SettingsError
  // naming the option that differs). Returns false when the tiles' optimiser
  // states do not fit this run's tiles (another tiling, or none stored): the
  // optimisers then start afresh, on every rank, while object, probe and
  // iteration count continue.
  bool restore(const torch::Tensor& object, const torch::Tensor& probe, int iteration,
               const OptimizerStates& states, const torch::Tensor& positions = {});

  // Window corners (N, 2) [y, x] in object pixels, float64: the measured ones,
  // or the refined ones under position correction (same on every rank).
  torch::Tensor positions() const;
  // Patterns that changed tile so far (position correction).
  int64_t patterns_moved() const { return patterns_moved_; }
  double position_rate() const { return position_rate_; }
  // The probe defocus search run at construction: (candidate, loss) pairs, empty when skipped.
  const std::vector<std::pair<double, double>>& defocus_search() const { return defocus_losses_; }
  // The defocus read from the data at construction (models/defocus_estimate.h);
  // nullopt when not tried.
  const std::optional<DefocusEstimate>& defocus_estimate() const { return defocus_estimate_; }
  // The zero order [y, x] used, in detector pixels of the frames as loaded.
  std::pair<double, double> zero_order() const { return zero_order_; }
  // The tilt (far-field pixels) given to the probe guess to put it on the zero order; 0 without a guess.
  std::pair<double, double> probe_tilt_px() const { return probe_tilt_px_; }
  // The factor that gave the probe guess the data's mean counts; 1 when not rescaled.
  double probe_guess_scale() const { return probe_guess_scale_; }

  const Tiling& tiling() const { return *tiling_; }
  const ScanProblem& problem() const { return problem_; }
  const ReconstructionSettings& settings() const { return settings_; }
  double object_rate() const { return object_rate_; }
  double probe_rate() const { return probe_rate_; }
  int64_t batch_size() const { return batch_size_; }
  int rank() const;
  const std::vector<int>& local_tiles() const { return local_tiles_; }
  int64_t local_pattern_count() const;
  // Elements sent to other ranks per optimiser step (reduction + refresh + probe).
  int64_t remote_elements_per_step() const;
  const comm::HaloExchange& exchange() const { return *exchange_; }

 private:
  struct TileState;
  // Settings checks, tiling, this rank's tiles and frames: no communication.
  void set_up_local_tiles();
  void initialise_probe_and_object();
  void derive_learning_rates();
  void set_adam_epsilons(bool refine_probe);
  double adam_epsilon_scale() const;  // the setting, or its default for the optimiser
  // Probe power summed over each local tile's windows, (1, H, W), complete on
  // the owned regions (a halo reduction: every rank calls it).
  std::map<int, torch::Tensor> illumination() const;

  // Object back to 1, the given probe, fresh optimisers, iteration 0.
  void reset(const torch::Tensor& probe);
  // The defocus starts a probe start strategy may call (train/probe_starts.h):
  // defocus added to start.focused_probe about start.centre, with phases at
  // the edge of start.aperture_radius_px.
  void search_probe_defocus(const ProbeStartContext& start);
  // Starts the probe from the defocus the shadow parallax shows; false when the data show none.
  bool start_from_estimated_defocus(const ProbeStartContext& start);
  void make_optimizers();
  torch::Tensor read_frames(const std::vector<int64_t>& indices) const;  // (n, h, w) FFT order, working dtype
  void update_tile_positions(TileState& worker) const;
  void reassign_moved_patterns();
  void constrain_positions();
  void search_positions();
  void update_position_bounds();
  bool refining_positions() const {
    return position_optimizer_ && iteration_ >= settings_.positions_from;
  }
  // The step (train/reconstruction_step.cpp): gradients of a batch, summed
  // over tiles and ranks, then the optimisers; the gauge and the modes' orthogonality per iteration.
  struct PatternSplit;
  struct SharedGradients;
  double compute_batch(const std::vector<int64_t>& batch, int64_t global_batch_size);
  double step_batch(const std::vector<int64_t>& batch, bool refine_probe);  // the batch's loss
  std::vector<PatternSplit> split_batch(const std::vector<int64_t>& batch) const;
  void run_patterns(TileState& tile, const std::vector<int64_t>& rows, double scale, double& loss_sum);
  void add_regulariser_gradients(int64_t global_batch_size, double& loss_sum);
  SharedGradients shared_gradients(const std::vector<int64_t>& batch, bool refine_probe, bool refine_positions);
  // Sums the shared gradients and the loss over ranks, running `meanwhile` while the sum is in flight;
  // with `object_squares`, `meanwhile` first, and the owned object gradient's sum of squares goes along
  // (into object_gradient_squares_, also for a single process).
  void sum_over_ranks(SharedGradients& shared, double& loss_sum, const std::function<void()>& meanwhile,
                      bool object_squares);
  double owned_object_gradient_squares() const;  // this rank's tiles, owned pixels
  void install_shared_gradients(const SharedGradients& shared);
  void apply_phase_ramp_gauge();
  void orthogonalise_probe_modes();
  void apply_denoisers();
  double reduce_scalar(double v) const;  // sum over ranks
  double object_gradient_squares_ = 0;   // their sum of squares in the last compute_batch, over all ranks
  double reduce_max(double v) const;
  void wait_collective(comm::Request& request) const;  // waits, adding to collective_wait_seconds_

  ScanProblem problem_;
  ReconstructionSettings settings_;
  std::shared_ptr<comm::Communicator> comm_;
  const LossInfo* loss_;
  const OptimizerInfo* optimizer_;
  std::unique_ptr<Tiling> tiling_;
  std::vector<int> local_tiles_, rank_of_tile_;
  std::vector<std::unique_ptr<TileState>> tile_states_;
  std::unique_ptr<comm::HaloExchange> exchange_;
  torch::Tensor valid_fft_;  // (h, w) bool in FFT order
  torch::Tensor loss_mask_;  // valid_fft_ if some pixel is excluded, else undefined
  torch::Dtype real_dtype_ = torch::kFloat32;
  int iteration_ = 0;
  bool frames_released_ = false;
  int64_t batch_size_ = 0;
  double object_rate_ = 0, probe_rate_ = 0;
  mutable double collective_wait_seconds_ = 0;  // blocked in allreduces so far
  std::vector<std::pair<std::shared_ptr<Prior>, PriorSettings>> priors_;
  // Position correction: every position, on every rank (tiny next to the
  // object), so that ranks agree on who owns which pattern without talking.
  torch::Tensor positions_, measured_positions_;  // (N, 2) window corners, working dtype
  torch::Tensor position_lo_, position_hi_;       // (N, 2) bounds that keep each window in its tile
  const OptimizerInfo* position_optimizer_info_ = nullptr;
  std::unique_ptr<torch::optim::Optimizer> position_optimizer_;
  double position_rate_ = 0;
  torch::Tensor slice_transfer_;  // Fresnel transfer between slices (multislice only)
  std::vector<std::pair<double, double>> defocus_losses_;  // (candidate, loss) of the search
  std::optional<DefocusEstimate> defocus_estimate_;
  int64_t patterns_moved_ = 0;
  std::pair<double, double> zero_order_{0, 0}, probe_tilt_px_{0, 0};
  double probe_guess_scale_ = 1;
  // Phase-ramp gauge (models/phase_ramp.h): which one, and the zero order's
  // sub-pixel rest that the probe's far field is centred on.
  enum class Gauge { none, beam, object } gauge_ = Gauge::none;
  std::pair<double, double> gauge_rest_{0, 0};
};

}  // namespace tessera
