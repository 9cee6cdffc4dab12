#include "src/time_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "src/error.h"

namespace tessera {
namespace {

struct RankTraffic {
  int64_t out_messages = 0, in_messages = 0;
  double out_bytes = 0, in_bytes = 0;
};

// A rank's NIC injects and receives at once (full duplex): a phase lasts as
// long as the larger of its two directions.
double phase_seconds(const RankTraffic& t, const NetworkModel& net) {
  return std::max(net.send_seconds(t.out_messages, t.out_bytes), net.send_seconds(t.in_messages, t.in_bytes));
}

}  // namespace

TimePrediction predict_iteration_time(const ScanGeometry& geometry, const Tiling& tiling, const TimeModelInputs& in,
                                      const NetworkModel& network_in) {
  TESSERA_REQUIRE(SettingsError, std::isfinite(in.throughput) && in.throughput > 0,
                  "the time model needs a measured single-device throughput > 0 patterns/s (--throughput), got ",
                  in.throughput);
  TESSERA_REQUIRE(SettingsError, in.batch_size > 0, "the time model needs a batch size > 0, got ", in.batch_size);
  TESSERA_REQUIRE(SettingsError, in.fft_floor_s >= 0 && in.step_overhead_s >= 0 && in.devices >= 0 && in.draws >= 1,
                  "the time model's FFT floor, step overhead and devices must be >= 0 and draws >= 1");
  const int64_t N = geometry.num_positions();
  const int K = tiling.num_tiles();
  const NetworkModel net = network_in.for_job(K);
  TimePrediction p;
  p.ranks = K;
  p.steps = (N + in.batch_size - 1) / in.batch_size;
  p.ranks_per_device = in.devices > 0 ? (K + in.devices - 1) / in.devices : 1;
  const double rank_throughput = in.throughput / static_cast<double>(p.ranks_per_device);
  const double floor_per_pattern = N > 0 ? in.fft_floor_s / static_cast<double>(N) : 0;

  // Halo traffic per step: the reduction sends each link's region from the
  // halo holder to the owner; the refresh sends it back.
  std::vector<RankTraffic> reduction(K), refresh(K);
  for (const auto& l : tiling.links()) {
    if (l.from == l.to) continue;
    const double bytes = static_cast<double>(l.region.area() * in.halo_bytes_per_pixel);
    reduction[l.from].out_messages++, reduction[l.from].out_bytes += bytes;
    reduction[l.to].in_messages++, reduction[l.to].in_bytes += bytes;
    refresh[l.to].out_messages++, refresh[l.to].out_bytes += bytes;
    refresh[l.from].in_messages++, refresh[l.from].in_bytes += bytes;
  }
  std::vector<double> reduction_s(K), refresh_s(K);
  double max_refresh = 0, max_reduction = 0;
  for (int k = 0; k < K; ++k) {
    reduction_s[k] = phase_seconds(reduction[k], net);
    refresh_s[k] = phase_seconds(refresh[k], net);
    max_reduction = std::max(max_reduction, reduction_s[k]);
    max_refresh = std::max(max_refresh, refresh_s[k]);
    p.max_messages_per_step =
        std::max(p.max_messages_per_step, reduction[k].out_messages + refresh[k].out_messages);
    p.max_bytes_per_step = std::max(p.max_bytes_per_step, reduction[k].out_bytes + refresh[k].out_bytes);
  }
  const double allreduce_step =
      K <= 1 ? 0
             : (in.allreduce == AllreduceAlgorithm::Ring
                    ? net.ring_allreduce_seconds(static_cast<double>(in.allreduce_bytes), K)
                    : net.tree_allreduce_seconds(static_cast<double>(in.allreduce_bytes), K));

  std::vector<int> owner(N, -1);
  std::vector<char> boundary(N, 0);
  for (const Tile& t : tiling.tiles())
    for (int64_t j : t.positions) {
      owner[j] = t.index;
      boundary[j] = !t.owned.contains(geometry.footprint(j));
    }

  std::mt19937_64 gen(in.seed);
  std::vector<int64_t> order(N);
  std::vector<int64_t> count(K), boundary_count(K);
  double compute = 0, floor = 0, phase_serial = 0, phase_overlapped = 0, busiest = 0;
  for (int d = 0; d < in.draws; ++d) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), gen);
    for (int64_t b0 = 0; b0 < N; b0 += in.batch_size) {
      const int64_t b1 = std::min(N, b0 + in.batch_size);
      std::fill(count.begin(), count.end(), 0);
      std::fill(boundary_count.begin(), boundary_count.end(), 0);
      for (int64_t i = b0; i < b1; ++i) {
        const int64_t j = order[i];
        if (owner[j] < 0) continue;
        count[owner[j]]++;
        boundary_count[owner[j]] += boundary[j];
      }
      double step_compute = 0, step_serial = 0, step_overlapped = 0;
      int64_t step_busiest = 0;
      for (int k = 0; k < K; ++k) {
        const double c = static_cast<double>(count[k]) / rank_throughput;
        const double cb = static_cast<double>(boundary_count[k]) / rank_throughput;
        step_compute = std::max(step_compute, c);
        step_busiest = std::max(step_busiest, count[k]);
        step_serial = std::max(step_serial, c + reduction_s[k]);
        step_overlapped = std::max(step_overlapped, std::max(c, cb + reduction_s[k]));
      }
      compute += step_compute;
      floor += static_cast<double>(step_busiest) * floor_per_pattern * static_cast<double>(p.ranks_per_device);
      busiest += static_cast<double>(step_busiest);
      phase_serial += step_serial;
      phase_overlapped += step_overlapped;
    }
  }
  const double draws = in.draws;
  p.compute_s = compute / draws;
  p.fft_floor_s = floor / draws;
  p.busiest_patterns_per_step = busiest / (draws * static_cast<double>(p.steps));
  p.reduction_s = max_reduction * static_cast<double>(p.steps);
  p.refresh_s = max_refresh * static_cast<double>(p.steps);
  p.allreduce_s = allreduce_step * static_cast<double>(p.steps);
  p.overhead_s = in.step_overhead_s * static_cast<double>(p.steps);
  const double after = p.allreduce_s + p.refresh_s + p.overhead_s;
  p.serial_s = phase_serial / draws + after;
  p.overlapped_s = phase_overlapped / draws + after;
  return p;
}

double throughput_from_one_rank(int64_t patterns, int64_t steps, double seconds_per_iteration,
                                double step_overhead_s) {
  const double compute = seconds_per_iteration - static_cast<double>(steps) * step_overhead_s;
  TESSERA_REQUIRE(SettingsError, patterns > 0 && compute > 0,
                  "a one-rank run of ", patterns, " patterns in ", seconds_per_iteration, " s/iteration leaves ",
                  compute, " s of compute after ", steps, " steps of ", step_overhead_s, " s overhead");
  return static_cast<double>(patterns) / compute;
}

}  // namespace tessera
