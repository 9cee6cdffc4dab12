#pragma once
// A latency-bandwidth (Hockney) model of the network between ranks, with the
// presets `tessera plan --network` knows, for the time model
// (src/time_model.h).
//
// A message of n bytes costs latency + n / bandwidth. Messages a rank posts
// together are charged one after the other: the NIC injects them in turn, and
// the per-message software overhead (MPI/NCCL/Gloo) is of the order of the
// latency, so this is the pessimistic end of LogP. The bandwidth is a node's
// injection bandwidth, shared by the ranks on that node when they all send at
// once (they do: every rank exchanges its halos in the same phase).
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

struct NetworkModel {
  std::string name;
  double latency_s = 0;            // one-way time of a small message
  double node_bandwidth_Bps = 0;   // bytes/s a node injects (and receives)
  int ranks_per_node = 1;          // ranks sharing that bandwidth; 0: every rank of the job (one host)
  std::string source;              // where the figures come from

  // The same network for a job of `ranks` ranks: ranks_per_node resolved
  // (no more than the job has).
  NetworkModel for_job(int64_t ranks) const;
  double rank_bandwidth_Bps() const { return node_bandwidth_Bps / (ranks_per_node > 0 ? ranks_per_node : 1); }
  // `messages` messages of `bytes` bytes in all, from one rank.
  double send_seconds(int64_t messages, double bytes) const;
  // Sum of a buffer of `bytes` over `ranks` ranks with a ring allreduce
  // (reduce-scatter then allgather: 2 (p - 1) steps of bytes / p each).
  double ring_allreduce_seconds(double bytes, int64_t ranks) const;
  // The same with a binary-tree reduce then broadcast (2 log2 p steps of the
  // whole buffer): what MPI and NCCL pick for small buffers on many ranks.
  double tree_allreduce_seconds(double bytes, int64_t ranks) const;

  // Known presets: "summit", "h100-cluster", "loopback-gloo". Throws
  // SettingsError naming them for any other name.
  static NetworkModel preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // Custom figures: latency in microseconds, a node's bandwidth in gigabits
  // per second (as NICs are rated: NDR = 400).
  static NetworkModel custom(double latency_us, double bandwidth_Gbit_s, int ranks_per_node = 1);
};

}  // namespace tessera
