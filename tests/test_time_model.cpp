// The time model of `tessera plan` (src/time_model.h, src/network_model.h):
// hand-computed network costs, the exact busiest-rank statistics of random
// batches, limits where the answer is known, and monotonicity.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "src/error.h"
#include "src/network_model.h"
#include "src/time_model.h"
#include "src/tiling.h"

namespace tessera {
namespace {

ScanGeometry raster(int64_t n, double step, int64_t frame) {
  auto iy = torch::arange(n, torch::kFloat64).view({-1, 1}).expand({n, n}).reshape({-1});
  auto ix = torch::arange(n, torch::kFloat64).view({1, -1}).expand({n, n}).reshape({-1});
  return ScanGeometry::from_pixels(torch::stack({iy * step, ix * step}, 1), frame, frame);
}

TimeModelInputs inputs(double throughput, int64_t batch) {
  TimeModelInputs in;
  in.throughput = throughput;
  in.batch_size = batch;
  in.allreduce_bytes = (16 * 16 * 2 + 1) * 4;
  return in;
}

// No latency, (practically) infinite bandwidth.
NetworkModel ideal() { return NetworkModel::custom(0, 1e15); }

// log of n choose k
double log_choose(int64_t n, int64_t k) {
  return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
}

}  // namespace

TEST(NetworkModel, HandComputedCosts) {
  // 8 Gb/s = 1e9 bytes/s, 2 us.
  const auto n = NetworkModel::custom(2, 8);
  EXPECT_DOUBLE_EQ(n.rank_bandwidth_Bps(), 1e9);
  EXPECT_NEAR(n.send_seconds(3, 1e6), 3 * 2e-6 + 1e-3, 1e-15);
  EXPECT_EQ(n.send_seconds(0, 0), 0);
  // Ring over 4 ranks: 6 steps of a quarter of the buffer.
  EXPECT_NEAR(n.ring_allreduce_seconds(4e6, 4), 6 * 2e-6 + 6 * 1e6 / 1e9, 1e-15);
  // Tree over 5 ranks: 2 * ceil(log2 5) = 6 steps of the whole buffer.
  EXPECT_NEAR(n.tree_allreduce_seconds(4e6, 5), 6 * (2e-6 + 4e-3), 1e-15);
  EXPECT_EQ(n.ring_allreduce_seconds(4e6, 1), 0);
  // A node's bandwidth shared by its ranks, but never by more ranks than the job has.
  const auto shared = NetworkModel::custom(2, 8, 6);
  EXPECT_DOUBLE_EQ(shared.rank_bandwidth_Bps(), 1e9 / 6);
  EXPECT_DOUBLE_EQ(shared.for_job(2).rank_bandwidth_Bps(), 1e9 / 2);
  // 0: every rank of the job on one node.
  EXPECT_DOUBLE_EQ(NetworkModel::custom(2, 8, 0).for_job(4).rank_bandwidth_Bps(), 1e9 / 4);
  EXPECT_THROW(NetworkModel::custom(2, 8, -1), SettingsError);
}

TEST(NetworkModel, PresetsAndErrors) {
  for (const auto& name : NetworkModel::preset_names()) {
    const auto n = NetworkModel::preset(name);
    EXPECT_GT(n.latency_s, 0) << name;
    EXPECT_GT(n.node_bandwidth_Bps, 0) << name;
    EXPECT_FALSE(n.source.empty()) << name;
  }
  // Summit: 25 GB/s per node over its 6 GPUs.
  EXPECT_NEAR(NetworkModel::preset("summit").rank_bandwidth_Bps(), 25e9 / 6, 1);
  try {
    NetworkModel::preset("ethernet");
    FAIL() << "an unknown preset must throw";
  } catch (const SettingsError& e) {
    EXPECT_NE(std::string(e.what()).find("summit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(NetworkModel::custom(-1, 8), SettingsError);
  EXPECT_THROW(NetworkModel::custom(1, 0), SettingsError);
}

TEST(TimeModel, OneRankIsPatternsOverThroughput) {
  const auto g = raster(16, 4, 16);
  const auto t = Tiling::automatic(g, 1);
  auto in = inputs(1000, 50);  // 256 patterns: 6 steps, the last one short
  in.step_overhead_s = 0.01;
  in.fft_floor_s = 0.064;
  const auto p = predict_iteration_time(g, t, in, NetworkModel::preset("summit"));
  EXPECT_EQ(p.steps, 6);
  EXPECT_NEAR(p.compute_s, 256.0 / 1000, 1e-12);
  EXPECT_NEAR(p.fft_floor_s, 0.064, 1e-12);
  EXPECT_EQ(p.reduction_s + p.refresh_s + p.allreduce_s, 0);
  EXPECT_NEAR(p.serial_s, 0.256 + 6 * 0.01, 1e-12);
  EXPECT_NEAR(p.overlapped_s, p.serial_s, 1e-12);
  // What a measured run gives back.
  EXPECT_NEAR(throughput_from_one_rank(256, 6, p.serial_s, 0.01), 1000, 1e-9);
  EXPECT_THROW(throughput_from_one_rank(256, 6, 0.05, 0.01), SettingsError);
}

TEST(TimeModel, BusiestRankOfRandomBatchesMatchesTheHypergeometricExpectation) {
  // Two tiles of 128 patterns, steps of 32 drawn at random: the busiest tile
  // of a step holds max(X, 32 - X), X hypergeometric.  A model using the mean
  // share (16) would be 14 % low, which this detects.
  const auto g = raster(16, 4, 16);
  const auto t = Tiling::grid(g, 1, 2);
  const int64_t n0 = t.tile(0).positions.size(), n1 = t.tile(1).positions.size(), N = n0 + n1, b = 32;
  ASSERT_EQ(N, 256);
  double exact = 0;
  for (int64_t x = std::max<int64_t>(0, b - n1); x <= std::min(b, n0); ++x)
    exact += std::exp(log_choose(n0, x) + log_choose(n1, b - x) - log_choose(N, b)) * std::max(x, b - x);
  auto in = inputs(1000, b);
  in.draws = 400;
  const auto p = predict_iteration_time(g, t, in, ideal());
  EXPECT_NEAR(p.busiest_patterns_per_step, exact, 0.01 * exact);
  EXPECT_GT(std::abs(p.busiest_patterns_per_step - b / 2.0), 0.08 * exact);  // the mean share is wrong
  EXPECT_NEAR(p.compute_s, p.busiest_patterns_per_step * p.steps / 1000, 1e-12);
  EXPECT_NEAR(p.serial_s, p.compute_s, 1e-9);
}

TEST(TimeModel, HaloMessagesHandComputed) {
  // Two tiles side by side: one link each way. Per step each rank sends one
  // message of the link's region in the reduction and receives one; the
  // refresh is the same backwards.
  const auto g = raster(16, 4, 16);
  const auto t = Tiling::grid(g, 1, 2);
  ASSERT_EQ(t.links().size(), 2u);
  const double bytes0 = t.links()[0].region.area() * 8.0, bytes1 = t.links()[1].region.area() * 8.0;
  const auto net = NetworkModel::custom(100, 8);  // 100 us, 1 GB/s
  auto in = inputs(1e9, 64);                      // compute negligible
  const auto p = predict_iteration_time(g, t, in, net);
  const double per_step = 100e-6 + std::max(bytes0, bytes1) / 1e9;
  EXPECT_EQ(p.steps, 4);
  EXPECT_NEAR(p.reduction_s, 4 * per_step, 1e-12);
  EXPECT_NEAR(p.refresh_s, 4 * per_step, 1e-12);
  EXPECT_EQ(p.max_messages_per_step, 2);
  EXPECT_NEAR(p.allreduce_s, 4 * net.ring_allreduce_seconds(in.allreduce_bytes, 2), 1e-12);
  EXPECT_NEAR(p.serial_s, p.compute_s + p.reduction_s + p.refresh_s + p.allreduce_s, 1e-9);
}

TEST(TimeModel, OverlapHidesTheReductionOnlyBehindInteriorPatterns) {
  const auto g = raster(24, 4, 16);
  const auto t = Tiling::automatic(g, 4);
  auto in = inputs(200, 72);
  // Latency about the compute of a step: hidden by the interior patterns in
  // part, so overlapped lies strictly between compute + the rest and serial.
  const auto net = NetworkModel::custom(0.03 * 1e6, 80);
  const auto p = predict_iteration_time(g, t, in, net);
  EXPECT_LT(p.overlapped_s, p.serial_s);
  EXPECT_GE(p.overlapped_s, p.compute_s + p.refresh_s + p.allreduce_s - 1e-12);
  // Tiles much smaller than a window: every pattern reaches the halo, nothing to hide behind.
  const auto small = raster(12, 1, 16);
  const auto ts = Tiling::automatic(small, 9);
  const auto q = predict_iteration_time(small, ts, inputs(200, 36), net);
  EXPECT_NEAR(q.overlapped_s, q.serial_s, 1e-12);
}

TEST(TimeModel, Monotone) {
  const auto g = raster(24, 4, 16);
  const auto t = Tiling::automatic(g, 4);
  const auto in = inputs(500, 72);
  const auto base = predict_iteration_time(g, t, in, NetworkModel::custom(10, 10));
  auto faster = in;
  faster.throughput = 1000;
  EXPECT_LT(predict_iteration_time(g, t, faster, NetworkModel::custom(10, 10)).serial_s, base.serial_s);
  EXPECT_GT(predict_iteration_time(g, t, in, NetworkModel::custom(20, 10)).serial_s, base.serial_s);
  EXPECT_GT(predict_iteration_time(g, t, in, NetworkModel::custom(10, 5)).serial_s, base.serial_s);
  // Four ranks sharing two devices: each rank at half the throughput.
  auto shared = in;
  shared.devices = 2;
  const auto s = predict_iteration_time(g, t, shared, NetworkModel::custom(10, 10));
  EXPECT_EQ(s.ranks_per_device, 2);
  EXPECT_NEAR(s.compute_s, 2 * base.compute_s, 1e-12);
  // More ranks on the same scan: less compute for the busiest rank.
  const auto more = predict_iteration_time(g, Tiling::automatic(g, 9), in, NetworkModel::custom(10, 10));
  EXPECT_LT(more.compute_s, base.compute_s);
  EXPECT_GT(more.max_messages_per_step, base.max_messages_per_step);
}

TEST(TimeModel, RefusesMissingInputs) {
  const auto g = raster(8, 4, 16);
  const auto t = Tiling::automatic(g, 1);
  EXPECT_THROW(predict_iteration_time(g, t, inputs(0, 8), ideal()), SettingsError);
  EXPECT_THROW(predict_iteration_time(g, t, inputs(100, 0), ideal()), SettingsError);
}

}  // namespace tessera
