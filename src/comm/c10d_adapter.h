#pragma once
// Internal to src/comm: the one place that talks to c10d (TCPStore,
// PrefixStore, ProcessGroupGloo / ProcessGroupNCCL, Work).  Everything that
// differs between LibTorch 1.13 and 2.x is in c10d_compat.h, included only by
// the adapter's files (c10d_group.h and its c10d_*.cpp); this header
// includes no c10d header.
#include <torch/torch.h>

#include <chrono>
#include <memory>

#include "src/comm/communicator.h"
#include "src/comm/distributed_env.h"

namespace tessera::comm::detail {

// A connected group of env.world_size > 1 ranks.  Tensors handed to it are
// already contiguous, real-valued (complex viewed as real) and on the
// group's device; peers are other ranks.  Every returned operation's wait()
// throws tessera::CommunicationError with a diagnosis on failure.
class Group {
 public:
  // Creates or joins the rendezvous store, waits until all ranks joined, and
  // connects the backend (Gloo for CPU, NCCL for CUDA builds and devices).
  static std::shared_ptr<Group> create(const DistributedEnv& env, torch::Device device,
                                       std::chrono::milliseconds timeout);
  virtual ~Group() = default;

  virtual std::shared_ptr<PendingOp> send(const torch::Tensor& tensor, int dst, int tag) = 0;
  virtual std::shared_ptr<PendingOp> recv(const torch::Tensor& tensor, int src, int tag) = 0;
  virtual std::shared_ptr<PendingOp> allreduce_sum(const torch::Tensor& tensor) = 0;
  virtual std::shared_ptr<PendingOp> broadcast(const torch::Tensor& tensor, int root) = 0;
  virtual std::shared_ptr<PendingOp> barrier() = 0;
};

}  // namespace tessera::comm::detail
