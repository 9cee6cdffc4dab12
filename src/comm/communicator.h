#pragma once
// Point-to-point and collective communication between the ranks of a job:
// Gloo on CPU, NCCL on CUDA, over c10d (LibTorch 1.13 and 2.x).  With one
// rank it needs no store, no sockets and no backend.
//
// Like every c10d process group, a Communicator must be driven from one
// thread at a time, and every rank must issue its collectives in the same
// order.  Point-to-point messages between two ranks with the same tag are
// matched in the order they were posted.
//
// Failure model: a peer that dies, hangs, or cannot be reached makes the
// operations that depend on it throw tessera::CommunicationError, at the
// latest `timeout()` after wait() was called (a dead peer is noticed at once:
// its sockets close), plus a short diagnosis: the failing rank publishes its
// error in the rendezvous store, closes its own connections (so that ranks
// waiting on it fail now too, rather than at their timeout), and reads the
// others' reports until every rank has reported or is known to be dead, for
// at most min(timeout/5, 1 s) (2 s more at worst, when the store's host
// hangs).  A rank is named dead only when its process is gone (its liveness
// socket refuses connections), so a survivor that is slow to report is never
// mistaken for the culprit.  The message names this rank, the operation,
// the peer rank (for isend/irecv; for collectives that a peer is missing),
// the ranks that reported errors, the dead ones, and those alive but silent
// (hung or not yet affected).  After a failure the communicator is unusable.
//
// Communicators of several ranks must be created in the same order on every
// rank (each one gets its own namespace in the store).  On CUDA, wait()
// blocks the host until the NCCL operation finished on the GPU.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "src/comm/distributed_env.h"

namespace tessera::comm {

inline constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::minutes(5);

namespace detail {
// One outstanding operation (implemented in communicator.cpp and c10d_adapter.cpp).
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  // Blocks until done; throws tessera::CommunicationError on failure or timeout.
  virtual void wait() = 0;
  // Never blocks; true once wait() would return (or throw) at once.
  virtual bool completed() = 0;
};
class Group;
}  // namespace detail

// A pending isend/irecv/allreduce.  Default-constructed: already completed.
// Copies share the same operation.  A received or reduced tensor may be read
// once wait() returned or completed() returned true; a sent tensor may be
// modified from then on.  Destroying a Request without waiting is allowed.
class Request {
 public:
  Request() = default;
  explicit Request(std::shared_ptr<detail::PendingOp> op) : op_(std::move(op)) {}

  // Throws tessera::CommunicationError naming the peer rank and the operation
  // when the peer died, hung past the timeout, or the connection failed.
  // Waiting again after a failure throws the same error again.
  void wait();
  bool completed();

 private:
  std::shared_ptr<detail::PendingOp> op_;
};

class Communicator {
 public:
  // Gloo for CPU tensors, NCCL for CUDA tensors (CUDA builds only; the GPU
  // is `device`'s index, or LOCAL_RANK when it has none).  With
  // TESSERA_CUDA_COMM=gloo in the environment, CUDA tensors go through Gloo
  // via host copies instead: NCCL refuses several ranks on one GPU.  world_size == 1
  // creates no store and no backend.  With several ranks it connects to (or,
  // as rank 0 without the torchrun agent store, hosts) the TCPStore at
  // MASTER_ADDR:MASTER_PORT and waits for all ranks; it throws
  // tessera::CommunicationError when the port is busy, the store cannot be
  // reached, or some ranks do not join within `timeout` (naming them), and
  // tessera::SettingsError on an inconsistent env or a backend this build lacks.
  static std::shared_ptr<Communicator> create(const DistributedEnv& env,
                                              torch::Device device = torch::kCPU,
                                              std::chrono::milliseconds timeout = kDefaultTimeout);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  torch::Device device() const;
  std::chrono::milliseconds timeout() const;

  // Tensors live on device() and are dense; any layout (non-contiguous or
  // conjugate views are staged through a contiguous copy).  isend/irecv take
  // any dtype, complex included; sender and receiver sizes must match.
  // allreduce_sum on CPU takes float32/64, float16 and integer tensors, and
  // complex ones (reduced as real pairs).  tag >= 0.  A message to or from
  // this rank itself is delivered locally (post the isend before waiting on
  // the irecv).  Misuse (bad rank, tag, device, dtype) throws tessera::Error.
  Request isend(torch::Tensor tensor, int dst, int tag);
  Request irecv(torch::Tensor tensor, int src, int tag);
  // Asynchronous, in place: every rank ends up with the elementwise sum.
  Request allreduce_sum(torch::Tensor tensor);
  // Blocking, in place: every rank ends up with root's values.
  void broadcast(torch::Tensor tensor, int root);
  // Blocking: returns once every rank has entered it.
  void barrier();

  // Bytes passed to isend so far (for benchmarks).
  int64_t bytes_sent() const;

 private:
  struct Impl;
  explicit Communicator(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace tessera::comm
