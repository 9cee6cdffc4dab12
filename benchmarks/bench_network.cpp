// Latency and bandwidth of the Communicator between two ranks (issue 16: the
// figures of `tessera plan --network loopback-gloo`, and a check of the ring
// allreduce model on whatever links the ranks have).
//
//   torchrun --no_python --standalone --nproc_per_node 2 --redirects 1 --tee 1
//            bench_network [--device cpu|cuda] [--repeats 50] [--allreduce-bytes 131080]
//
// Ping-pong between ranks 0 and 1 with isend/irecv (the halo exchange's
// calls): half the round trip per message size. Latency: the least of the
// 4, 64 and 1024-byte figures (one of them is now and then a scheduler's
// time slice on a shared machine).
// Bandwidth: the slope between 1 MiB and 16 MiB (where the latency no longer
// counts). Then `--allreduce-bytes` (default: a 128 x 128 float probe
// gradient and the loss) is allreduced among every rank, measured against the
// ring model with the fitted figures. Rank 0 prints.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "src/comm/communicator.h"
#include "src/comm/distributed_env.h"
#include "src/network_model.h"
#include "src/threads.h"

namespace {

using Clock = std::chrono::steady_clock;
using tessera::comm::Communicator;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median half round trip of `bytes` between ranks 0 and 1 (other ranks idle).
double half_round_trip(Communicator& c, int64_t bytes, int repeats, torch::Device device) {
  auto buf = torch::zeros({std::max<int64_t>(bytes / 4, 1)}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  std::vector<double> t;
  for (int i = 0; i < repeats + 2; ++i) {  // two warm-ups (connections, allocations)
    c.barrier();
    const auto t0 = Clock::now();
    if (c.rank() == 0) {
      c.isend(buf, 1, 1).wait();
      c.irecv(buf, 1, 2).wait();
    } else if (c.rank() == 1) {
      c.irecv(buf, 0, 1).wait();
      c.isend(buf, 0, 2).wait();
    }
    if (i >= 2) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / 2);
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cpu";
  int repeats = 50;
  int64_t allreduce_bytes = (128 * 128 * 2 + 1) * 4;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_network: %s needs a value\n", a.c_str());
        std::exit(1);
      }
      return argv[++i];
    };
    if (a == "--device") device_name = next();
    else if (a == "--repeats") repeats = std::stoi(next());
    else if (a == "--allreduce-bytes") allreduce_bytes = std::stoll(next());
    else {
      std::fprintf(stderr,
                   "usage: torchrun ... --nproc_per_node 2 bench_network [--device cpu|cuda] [--repeats N] "
                   "[--allreduce-bytes B]\n");
      return a == "--help" || a == "-h" ? 0 : 1;
    }
  }
  try {
    tessera::configure_threads(1);
    const auto env = tessera::comm::DistributedEnv::from_environment();
    if (env.world_size < 2) {
      std::fprintf(stderr, "bench_network: run it with at least 2 ranks (torchrun --nproc_per_node 2)\n");
      return 1;
    }
    // Ranks beyond the GPUs share them (with TESSERA_CUDA_COMM=gloo: NCCL refuses that).
    const auto gpus = std::max<int64_t>(1, static_cast<int64_t>(torch::cuda::device_count()));
    const torch::Device device(device_name == "cuda"
                                   ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank % gpus))
                                   : torch::Device(torch::kCPU));
    auto comm = Communicator::create(env, device, std::chrono::seconds(120));
    const bool root = comm->rank() == 0;
    if (root) std::printf("bench_network: %d ranks, %s tensors; ping-pong between ranks 0 and 1, median of %d\n",
                          comm->size(), device_name.c_str(), repeats);
    if (root) std::printf("  %12s %14s %12s\n", "bytes", "half RTT us", "GB/s");
    double lat = 0, t1 = 0, t16 = 0;
    for (int64_t bytes : {int64_t{4}, int64_t{64}, int64_t{1024}, int64_t{16} << 10, int64_t{256} << 10,
                          int64_t{1} << 20, int64_t{4} << 20, int64_t{16} << 20}) {
      const double t = half_round_trip(*comm, bytes, bytes >= (4 << 20) ? std::max(5, repeats / 5) : repeats, device);
      if (bytes <= 1024) lat = lat > 0 ? std::min(lat, t) : t;
      if (bytes == (1 << 20)) t1 = t;
      if (bytes == (16 << 20)) t16 = t;
      if (root) std::printf("  %12lld %14.2f %12.3f\n", static_cast<long long>(bytes), t * 1e6, bytes / t / 1e9);
    }
    const double bandwidth = static_cast<double>((16 << 20) - (1 << 20)) / (t16 - t1);
    // The fitted model, then an allreduce of the probe's size against it.
    tessera::NetworkModel fitted = tessera::NetworkModel::custom(lat * 1e6, bandwidth * 8 / 1e9, 1).for_job(comm->size());
    auto t = torch::ones({std::max<int64_t>(allreduce_bytes / 4, 1)}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    std::vector<double> times;
    for (int i = 0; i < repeats + 2; ++i) {
      comm->barrier();
      const auto t0 = Clock::now();
      comm->allreduce_sum(t).wait();
      if (i >= 2) times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    if (root) {
      std::printf("fitted: latency %.1f us (least half round trip up to 1 KiB), bandwidth %.3f GB/s (1 to 16 MiB slope) "
                  "between two ranks of this host\n",
                  lat * 1e6, bandwidth / 1e9);
      std::printf("allreduce of %lld bytes over %d ranks: measured %.1f us, ring model %.1f us, tree model %.1f us "
                  "(the pair's bandwidth for every rank)\n",
                  static_cast<long long>(allreduce_bytes), comm->size(), median(times) * 1e6,
                  fitted.ring_allreduce_seconds(static_cast<double>(allreduce_bytes), comm->size()) * 1e6,
                  fitted.tree_allreduce_seconds(static_cast<double>(allreduce_bytes), comm->size()) * 1e6);
    }
    comm->barrier();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_network: %s\n", e.what());
    return 1;
  }
}
