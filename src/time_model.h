#pragma once
// Predicted seconds per iteration for a run on K ranks (one tile per rank),
// from a measured single-device throughput and a network model. Used by
// `tessera plan`; checked against measured multi-rank runs (README, issue 16).
//
// One optimiser step of the engine (train/reconstruction.cpp) on each rank:
//   1. its patterns of the step whose windows reach the halo (boundary),
//   2. posts the halo reduction (one message per link leaving it),
//   3. its interior patterns, while the halos are on the wire,
//   4. one allreduce (probe gradient and loss), then waits for the halos,
//   5. the optimiser step, then the halo refresh (one message per link back;
//      the rank waits for it before the next step).
// The allreduce makes every step end together on all ranks, so a step lasts
// as long as its slowest rank. Batches are drawn at random, so the busiest
// rank of a step holds more than its mean share: the model draws the batches
// as the engine does (a random permutation cut into steps) and takes, step
// by step, the slowest rank.
//
// Compute: a rank's patterns / its throughput, where its throughput is the
// single-device figure divided by the number of ranks that share its device
// (K ranks on D devices: ceil(K / D) per device), plus a fixed cost per step
// (the optimiser step, kernel launches; 0 unless given).
//
// Overlap: the engine posts the reduction before its interior patterns and
// waits after them, with non-blocking Gloo/NCCL transfers. Whether the
// transfer really progresses meanwhile depends on the backend (Gloo's TCP
// thread does; on shared cores it competes with compute), so both bounds are
// given: `serial` (compute, then the reduction) and `overlapped` (the
// reduction hidden behind the interior patterns where they last long enough).
// The refresh and the allreduce are never overlapped.
#include <cstdint>
#include <string>
#include <vector>

#include "src/geometry.h"
#include "src/network_model.h"
#include "src/tiling.h"

namespace tessera {

enum class AllreduceAlgorithm { Ring, Tree };

struct TimeModelInputs {
  double throughput = 0;        // patterns/s of one rank alone on one device (measured)
  double fft_floor_s = 0;       // seconds of a batched FFT + inverse FFT of every pattern of the scan on one
                                // device (0: not given)
  double step_overhead_s = 0;   // fixed seconds per optimiser step on every rank
  int64_t devices = 0;          // devices the ranks share (0: one device per rank)
  int64_t batch_size = 0;       // patterns per optimiser step over all ranks
  int64_t halo_bytes_per_pixel = 8;  // one complex object element times slices
  int64_t allreduce_bytes = 0;  // per step: probe gradient and loss
  AllreduceAlgorithm allreduce = AllreduceAlgorithm::Ring;
  int draws = 4;                // random iterations drawn for the busiest-rank statistics
  uint64_t seed = 1;
};

struct TimePrediction {
  int64_t ranks = 0, steps = 0;
  int64_t ranks_per_device = 1;
  double busiest_patterns_per_step = 0;  // mean over steps of the most patterns any rank has
  double compute_s = 0;      // per iteration: sum over steps of the slowest rank's compute
  double fft_floor_s = 0;    // the FFT floor of that compute (0 when not given)
  double reduction_s = 0;    // per iteration: the slowest rank's halo reduction (messages and bytes)
  double refresh_s = 0;      // per iteration: the slowest rank's halo refresh
  double allreduce_s = 0;    // per iteration
  double overhead_s = 0;     // per iteration: steps x step_overhead_s
  double serial_s = 0;       // per iteration, nothing overlapped
  double overlapped_s = 0;   // per iteration, the reduction behind the interior patterns
  int64_t max_messages_per_step = 0;  // sent by one rank, reduction and refresh
  double max_bytes_per_step = 0;
};

// Throws SettingsError on a non-positive throughput or batch size.
TimePrediction predict_iteration_time(const ScanGeometry& geometry, const Tiling& tiling, const TimeModelInputs& in,
                                      const NetworkModel& network);

// Single-device throughput from a measured one-rank run: patterns per second
// once the per-step overhead is taken out (what --throughput wants).
double throughput_from_one_rank(int64_t patterns, int64_t steps, double seconds_per_iteration,
                                double step_overhead_s = 0);

}  // namespace tessera
