#pragma once
// Internal to src/comm: the c10d process group behind comm::detail::Group,
// and one c10d operation. Its jobs have their own files: operations
// (c10d_operations.cpp), rendezvous and connection (c10d_rendezvous.cpp),
// failure diagnosis (c10d_diagnosis.cpp); the words of its messages are in
// failure_text.h.
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "src/comm/c10d_adapter.h"
#include "src/comm/c10d_compat.h"
#include "src/comm/failure_text.h"
#include "src/error.h"

namespace tessera::comm::detail {

using ::tessera::detail::concat;
using std::chrono::milliseconds;

// A text as the bytes a c10d Store keeps.
inline std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

class GroupImpl;

// One c10d Work.  Gloo's send/recv Work only learns that it completed inside
// wait() (isCompleted() stays false until then, and a short wait(timeout)
// poisons the whole Gloo context when it expires), so completed() hands such
// a Work to a background waiter instead of polling it.
class C10dOp : public PendingOp, public std::enable_shared_from_this<C10dOp> {
 public:
  C10dOp(std::shared_ptr<GroupImpl> group, OpInfo info, c10::intrusive_ptr<compat::Work> work,
         bool pollable)
      : group_(std::move(group)), info_(info), work_(std::move(work)), pollable_(pollable) {}

  void wait() override;
  bool completed() override;

 private:
  enum class State { Idle, Waiting, Done, Failed };
  void blocking_wait();  // called by exactly one thread, without the lock

  std::shared_ptr<GroupImpl> group_;
  OpInfo info_;
  c10::intrusive_ptr<compat::Work> work_;
  bool pollable_;
  std::mutex m_;
  std::condition_variable cv_;
  State state_ = State::Idle;
  std::string error_;
};

class GroupImpl : public Group, public std::enable_shared_from_this<GroupImpl> {
 public:
  GroupImpl(const DistributedEnv& env, torch::Device device, milliseconds timeout)
      : env_(env), device_(device), timeout_(timeout) {}
  ~GroupImpl() override {
    // After a failure, operations that were pending on connections this rank
    // hung up on wait out their timeout, and so would the backend's
    // destructor: the process is about to exit, let it go.
    if (diagnosis_ && hang_up_) (void)pg_.release();
  }

  void connect();

  std::shared_ptr<PendingOp> send(const torch::Tensor& t, int dst, int tag) override {
    return submit({OpKind::Send, dst, tag, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      return pg_->send(v, dst, tag);
    });
  }
  std::shared_ptr<PendingOp> recv(const torch::Tensor& t, int src, int tag) override {
    return submit({OpKind::Recv, src, tag, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      return pg_->recv(v, src, tag);
    });
  }
  std::shared_ptr<PendingOp> allreduce_sum(const torch::Tensor& t) override {
    return submit({OpKind::Allreduce, -1, 0, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      return pg_->allreduce(v, opts);
    });
  }
  std::shared_ptr<PendingOp> broadcast(const torch::Tensor& t, int root) override {
    return submit({OpKind::Broadcast, root, 0, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      return pg_->broadcast(v, opts);
    });
  }
  std::shared_ptr<PendingOp> barrier() override {
    return submit({OpKind::Barrier}, [&] {
      c10d::BarrierOptions opts;
      if (nccl_) opts.device_ids = {device_.index()};  // else NCCL guesses the GPU from the rank
      return pg_->barrier(opts);
    });
  }

  milliseconds timeout() const { return timeout_; }
  bool polls() const { return nccl_; }

  // The CommunicationError text for a failed operation: what failed, why, and
  // what the other ranks reported to the store.
  std::string failure_message(const OpInfo& op, const std::string& reason);

 private:
  static int64_t nbytes(const torch::Tensor& t) {
    return static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
  }
  template <typename Post>
  std::shared_ptr<PendingOp> submit(OpInfo info, Post&& post);
  std::string diagnose(const std::string& own_report);
  std::string store_host() const {
    return env_.use_agent_store ? "the torchrun agent" : "rank 0";
  }
  std::string store_address() const {
    return concat(env_.master_addr, ":", env_.master_port);
  }

  DistributedEnv env_;
  torch::Device device_;
  milliseconds timeout_;
  std::string backend_ = "gloo";
  bool nccl_ = false;
  c10::intrusive_ptr<c10d::Store> store_;  // this group's namespace in the rendezvous store
  c10::intrusive_ptr<compat::BackendBase> pg_;
  std::function<void()> hang_up_;           // closes this rank's connections (Gloo only)
  std::vector<std::string> peer_addresses_;  // liveness_address() of every rank, by rank

  std::mutex diag_mutex_;
  std::optional<std::string> diagnosis_;  // of the first failure, reused afterwards
};

template <typename Post>
std::shared_ptr<PendingOp> GroupImpl::submit(OpInfo info, Post&& post) {
  info.posted = Clock::now();
  c10::intrusive_ptr<compat::Work> work;
  try {
    work = post();
  } catch (...) {
    // Posting fails at once when the connection to the peer is already broken;
    // any other refusal (a dtype the backend cannot reduce, ...) is no peer's fault.
    const std::string reason = message_of(std::current_exception());
    if (classify(reason) == Cause::Other)
      throw tessera::Error(concat("rank ", env_.rank, ": ", backend_, " rejected the ",
                                  describe(info), " [", reason, "]"));
    throw CommunicationError(failure_message(info, reason));
  }
  const bool pollable = nccl_ || !is_p2p(info.kind);
  return std::make_shared<C10dOp>(shared_from_this(), info, std::move(work), pollable);
}


}  // namespace tessera::comm::detail
