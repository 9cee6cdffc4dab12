#include "src/network_model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "src/error.h"

namespace tessera {

NetworkModel NetworkModel::for_job(int64_t ranks) const {
  NetworkModel n = *this;
  const int64_t per_node = ranks_per_node > 0 ? ranks_per_node : ranks;
  n.ranks_per_node = static_cast<int>(std::max<int64_t>(1, std::min(per_node, ranks)));
  return n;
}

double NetworkModel::send_seconds(int64_t messages, double bytes) const {
  if (messages <= 0) return 0;
  return static_cast<double>(messages) * latency_s + bytes / rank_bandwidth_Bps();
}

double NetworkModel::ring_allreduce_seconds(double bytes, int64_t p) const {
  if (p <= 1) return 0;
  const double steps = 2.0 * static_cast<double>(p - 1);
  return steps * latency_s + steps * (bytes / static_cast<double>(p)) / rank_bandwidth_Bps();
}

double NetworkModel::tree_allreduce_seconds(double bytes, int64_t p) const {
  if (p <= 1) return 0;
  const double steps = 2.0 * std::ceil(std::log2(static_cast<double>(p)));
  return steps * (latency_s + bytes / rank_bandwidth_Bps());
}

std::vector<std::string> NetworkModel::preset_names() { return {"summit", "h100-cluster", "loopback-gloo"}; }

NetworkModel NetworkModel::preset(const std::string& name) {
  NetworkModel n;
  n.name = name;
  if (name == "summit") {
    // OLCF Summit: 6 V100 per node, one ConnectX-5 on dual-rail EDR
    // InfiniBand, 2 x 100 Gb/s = 25 GB/s node injection (OLCF Summit user
    // guide and fact sheet; ORNL, "Evaluation of CORAL interconnects"), non-
    // blocking fat tree. 1.5 us: MPI small-message latency on EDR with host
    // buffers (OSU latency ~1-1.5 us); CUDA-aware MPI from device buffers
    // adds a few us, and intra-node NVLink (faster) is not modelled.
    n.latency_s = 1.5e-6;
    n.node_bandwidth_Bps = 25e9;
    n.ranks_per_node = 6;
    n.source = "Summit: dual-rail EDR InfiniBand, 25 GB/s per node shared by 6 V100 ranks, 1.5 us MPI latency";
  } else if (name == "h100-cluster") {
    // A DGX-H100-style node: one 400 Gb/s NDR InfiniBand ConnectX-7 per GPU
    // (NVIDIA DGX H100 user guide), 50 GB/s per rank; ~1 us latency for NDR
    // with GPUDirect RDMA. NVLink inside a node (450 GB/s) is not modelled:
    // this is the inter-node bound.
    n.latency_s = 1.0e-6;
    n.node_bandwidth_Bps = 50e9;
    n.ranks_per_node = 1;
    n.source = "H100 cluster: one NDR 400 Gb/s InfiniBand NIC per GPU (50 GB/s per rank), 1 us latency";
  } else if (name == "loopback-gloo") {
    // Measured on the 2-core development machine (2026-12-06, while other
    // builds ran) with benchmarks/bench_network under torchrun, 2 ranks, 5
    // runs: half the round trip of a 4-byte isend/irecv ping-pong 42-141 us
    // (median 79), slope of the 1-16 MiB ones 1.6-3.0 GB/s (median 2.2).
    // Per rank: the pair's figure. The copies are done by the CPU, so ranks
    // that outnumber the cores slow them down like any compute (not modelled).
    n.latency_s = 80e-6;
    n.node_bandwidth_Bps = 2.2e9;
    n.ranks_per_node = 1;
    n.source = "Gloo over TCP loopback on this 2-core machine, measured with bench_network";
  } else {
    std::ostringstream known;
    for (const auto& p : preset_names()) known << (known.tellp() ? ", " : "") << p;
    throw SettingsError("unknown --network '" + name + "': known presets are " + known.str() +
                        ", or give --latency-us and --bandwidth-gbps");
  }
  return n;
}

NetworkModel NetworkModel::custom(double latency_us, double bandwidth_Gbit_s, int ranks_per_node) {
  TESSERA_REQUIRE(SettingsError, std::isfinite(latency_us) && latency_us >= 0,
                  "--latency-us must be a finite number >= 0, got ", latency_us);
  TESSERA_REQUIRE(SettingsError, std::isfinite(bandwidth_Gbit_s) && bandwidth_Gbit_s > 0,
                  "--bandwidth-gbps must be a finite number > 0 (gigabits per second), got ", bandwidth_Gbit_s);
  TESSERA_REQUIRE(SettingsError, ranks_per_node >= 0,
                  "--ranks-per-node must be >= 0 (0: every rank of the job on one node), got ", ranks_per_node);
  NetworkModel n;
  n.name = "custom";
  n.latency_s = latency_us * 1e-6;
  n.node_bandwidth_Bps = bandwidth_Gbit_s * 1e9 / 8;
  n.ranks_per_node = ranks_per_node;
  std::ostringstream s;
  s << "custom: " << latency_us << " us latency, " << bandwidth_Gbit_s << " Gb/s per node shared by ";
  if (ranks_per_node > 0)
    s << ranks_per_node << " rank(s)";
  else
    s << "every rank";
  n.source = s.str();
  return n;
}

}  // namespace tessera
