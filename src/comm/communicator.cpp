#include "src/comm/communicator.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>

#include "src/comm/c10d_adapter.h"
#include "src/error.h"

namespace tessera::comm {
namespace {

using ::tessera::detail::concat;
using detail::PendingOp;

int64_t nbytes(const torch::Tensor& t) {
  return static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
}

// A plain contiguous tensor with t's values (conjugate/negative views resolved).
torch::Tensor materialize(const torch::Tensor& t) {
  auto out = torch::empty(t.sizes(), t.options());
  out.copy_(t);
  return out;
}

// What goes on the wire: contiguous, no lazy conj/neg bit, complex viewed as
// real (neither Gloo nor NCCL reduces complex numbers), on the backend's
// device (host memory when Gloo carries CUDA tensors).  `staged` is set when
// the caller's tensor could not be used directly.
struct Wire {
  torch::Tensor wire;
  torch::Tensor staged;
};

Wire to_wire(const torch::Tensor& t, bool copy_in, const torch::Device& wire_device) {
  Wire w;
  torch::Tensor buf = t;
  if (t.device() != wire_device || !t.is_contiguous() || t.is_conj() || t.is_neg()) {
    w.staged = torch::empty(t.sizes(), t.options().device(wire_device));
    if (copy_in) w.staged.copy_(t);
    buf = w.staged;
  }
  w.wire = buf.is_complex() ? torch::view_as_real(buf) : buf;
  return w;
}

// Keeps a staged buffer alive while the operation runs and, for an operation
// that writes (irecv, allreduce, broadcast), copies it into the caller's
// tensor once the operation succeeded.
class StagedOp : public PendingOp {
 public:
  StagedOp(std::shared_ptr<PendingOp> inner, torch::Tensor staged, torch::Tensor target)
      : inner_(std::move(inner)), staged_(std::move(staged)), target_(std::move(target)) {}

  void wait() override {
    inner_->wait();
    finish();
  }
  bool completed() override {
    if (!inner_->completed()) return false;
    try {
      wait();
    } catch (...) {
      // wait() will throw it again for the caller.
    }
    return true;
  }

 private:
  void finish() {
    std::lock_guard<std::mutex> lk(m_);
    if (!finished_ && target_.defined()) target_.copy_(staged_);
    finished_ = true;
  }
  std::shared_ptr<PendingOp> inner_;
  torch::Tensor staged_, target_;
  std::mutex m_;
  bool finished_ = false;
};

// Messages from a rank to itself (periodic neighbours, one-rank runs): matched
// by tag in posting order, without any backend.
struct Mailbox {
  struct Recv {
    torch::Tensor target;
    bool done = false;
  };
  std::mutex m;
  std::map<int, std::deque<torch::Tensor>> sends;             // unmatched copies, by tag
  std::map<int, std::deque<std::shared_ptr<Recv>>> receives;  // unmatched receives, by tag
};

void deliver(const torch::Tensor& sent, Mailbox::Recv& recv, int rank, int tag) {
  TESSERA_REQUIRE(Error, sent.numel() == recv.target.numel() && sent.dtype() == recv.target.dtype(),
                  "rank ", rank, ": message to itself with tag ", tag, " does not fit: sent ",
                  sent.numel(), " elements of ", sent.dtype(), ", receive buffer holds ",
                  recv.target.numel(), " of ", recv.target.dtype());
  recv.target.copy_(sent.reshape(recv.target.sizes()));
  recv.done = true;
}

class LocalRecvOp : public PendingOp {
 public:
  LocalRecvOp(std::shared_ptr<Mailbox> box, std::shared_ptr<Mailbox::Recv> recv, int rank, int tag,
              int64_t bytes)
      : box_(std::move(box)), recv_(std::move(recv)), rank_(rank), tag_(tag), bytes_(bytes) {}

  void wait() override {
    std::lock_guard<std::mutex> lk(box_->m);
    // Only this rank can post the matching isend, from the one thread that
    // drives the communicator: waiting could never end.
    TESSERA_REQUIRE(CommunicationError, recv_->done, "rank ", rank_, ": irecv of ", bytes_,
                    " bytes from rank ", rank_, " itself (tag ", tag_,
                    ") has no matching isend: post the isend before waiting");
  }
  bool completed() override {
    std::lock_guard<std::mutex> lk(box_->m);
    return recv_->done;
  }

 private:
  std::shared_ptr<Mailbox> box_;
  std::shared_ptr<Mailbox::Recv> recv_;
  int rank_, tag_;
  int64_t bytes_;
};

}  // namespace

// ---------------------------------------------------------------------------

void Request::wait() {
  if (op_) op_->wait();
}

bool Request::completed() { return !op_ || op_->completed(); }

struct Communicator::Impl {
  int rank = 0, size = 1;
  torch::Device device = torch::kCPU;
  // Where the backend works: `device`, or the host when CUDA tensors go
  // through Gloo (TESSERA_CUDA_COMM=gloo), staged by a copy each way.
  torch::Device wire_device = torch::kCPU;
  std::chrono::milliseconds timeout{0};
  std::shared_ptr<detail::Group> group;  // null for a single rank
  std::atomic<int64_t> bytes_sent{0};
  std::shared_ptr<Mailbox> mailbox = std::make_shared<Mailbox>();

  void check_tensor(const torch::Tensor& t, const char* op) const {
    TESSERA_REQUIRE(Error, t.defined(), op, ": the tensor is undefined");
    TESSERA_REQUIRE(Error, t.layout() == torch::kStrided, op,
                    ": only dense (strided) tensors can be communicated");
    const bool same = t.device().type() == device.type() &&
                      (!device.is_cuda() || t.device().index() == device.index());
    TESSERA_REQUIRE(Error, same, op, ": the tensor is on ", t.device(),
                    " but this communicator works on ", device);
  }
  void check_peer(int peer, const char* what, const char* op) const {
    TESSERA_REQUIRE(Error, peer >= 0 && peer < size, op, ": ", what, " rank ", peer,
                    " is not in [0, ", size, ")");
  }
};

Communicator::Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Communicator::~Communicator() = default;

std::shared_ptr<Communicator> Communicator::create(const DistributedEnv& env, torch::Device device,
                                                   std::chrono::milliseconds timeout) {
  TESSERA_REQUIRE(SettingsError, env.world_size >= 1, "world size ", env.world_size,
                  " must be at least 1");
  TESSERA_REQUIRE(SettingsError, env.rank >= 0 && env.rank < env.world_size, "rank ", env.rank,
                  " is not in [0, world size ", env.world_size, ")");
  TESSERA_REQUIRE(SettingsError, timeout.count() > 0, "communication timeout must be positive, got ",
                  timeout.count(), " ms");
  if (device.is_cuda()) {
    const int index = device.has_index() ? device.index() : env.local_rank;
    const auto count = static_cast<int>(torch::cuda::device_count());
    TESSERA_REQUIRE(SettingsError, index < count, "rank ", env.rank, " (local rank ",
                    env.local_rank, ") wants GPU ", index, " but ", count,
                    " CUDA device(s) are visible");
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  } else {
    TESSERA_REQUIRE(SettingsError, device.is_cpu(), "communication works on CPU or CUDA, not ",
                    device);
    device = torch::Device(torch::kCPU);
  }

  // NCCL refuses two ranks on one GPU (several processes sharing a device):
  // Gloo through host memory works there, at the cost of a copy each way.
  const char* cuda_comm = std::getenv("TESSERA_CUDA_COMM");
  const std::string via = cuda_comm ? cuda_comm : "";
  TESSERA_REQUIRE(SettingsError, via.empty() || via == "nccl" || via == "gloo",
                  "TESSERA_CUDA_COMM must be nccl or gloo, got '", via, "'");
  auto impl = std::make_shared<Impl>();
  impl->rank = env.rank;
  impl->size = env.world_size;
  impl->device = device;
  impl->wire_device = device.is_cuda() && via == "gloo" ? torch::Device(torch::kCPU) : device;
  impl->timeout = timeout;
  if (env.distributed()) impl->group = detail::Group::create(env, impl->wire_device, timeout);
  return std::shared_ptr<Communicator>(new Communicator(std::move(impl)));
}

int Communicator::rank() const { return impl_->rank; }
int Communicator::size() const { return impl_->size; }
torch::Device Communicator::device() const { return impl_->device; }
std::chrono::milliseconds Communicator::timeout() const { return impl_->timeout; }
int64_t Communicator::bytes_sent() const { return impl_->bytes_sent.load(); }

Request Communicator::isend(torch::Tensor tensor, int dst, int tag) {
  Impl& c = *impl_;
  c.check_tensor(tensor, "isend");
  c.check_peer(dst, "destination", "isend");
  TESSERA_REQUIRE(Error, tag >= 0, "isend: tag ", tag, " must be non-negative");
  c.bytes_sent += nbytes(tensor);
  if (tensor.numel() == 0) return Request();

  if (dst == c.rank) {
    std::lock_guard<std::mutex> lk(c.mailbox->m);
    auto& waiting = c.mailbox->receives[tag];
    if (!waiting.empty()) {
      deliver(tensor, *waiting.front(), c.rank, tag);
      waiting.pop_front();
    } else {
      c.mailbox->sends[tag].push_back(materialize(tensor));
    }
    return Request();  // the data is copied: the tensor may be reused at once
  }

  Wire w = to_wire(tensor, /*copy_in=*/true, c.wire_device);
  auto op = c.group->send(w.wire, dst, tag);
  if (w.staged.defined()) op = std::make_shared<StagedOp>(op, w.staged, torch::Tensor());
  return Request(op);
}

Request Communicator::irecv(torch::Tensor tensor, int src, int tag) {
  Impl& c = *impl_;
  c.check_tensor(tensor, "irecv");
  c.check_peer(src, "source", "irecv");
  TESSERA_REQUIRE(Error, tag >= 0, "irecv: tag ", tag, " must be non-negative");
  if (tensor.numel() == 0) return Request();

  if (src == c.rank) {
    std::lock_guard<std::mutex> lk(c.mailbox->m);
    auto recv = std::make_shared<Mailbox::Recv>();
    recv->target = tensor;
    auto& sent = c.mailbox->sends[tag];
    if (!sent.empty()) {
      deliver(sent.front(), *recv, c.rank, tag);
      sent.pop_front();
    } else {
      c.mailbox->receives[tag].push_back(recv);
    }
    return Request(std::make_shared<LocalRecvOp>(c.mailbox, recv, c.rank, tag, nbytes(tensor)));
  }

  Wire w = to_wire(tensor, /*copy_in=*/false, c.wire_device);
  auto op = c.group->recv(w.wire, src, tag);
  if (w.staged.defined()) op = std::make_shared<StagedOp>(op, w.staged, tensor);
  return Request(op);
}

Request Communicator::allreduce_sum(torch::Tensor tensor) {
  Impl& c = *impl_;
  c.check_tensor(tensor, "allreduce_sum");
  if (c.wire_device.is_cpu()) {
    // What Gloo adds on every LibTorch since 1.13 (it would otherwise fail
    // inside its worker thread, which looks like a communication failure).
    // Checked for one rank too, so that a single-process run fails alike.
    const auto real = tensor.is_complex() ? c10::toRealValueType(tensor.scalar_type())
                                          : tensor.scalar_type();
    const bool supported = real == torch::kFloat32 || real == torch::kFloat64 ||
                           real == torch::kFloat16 || real == torch::kInt8 ||
                           real == torch::kUInt8 || real == torch::kInt32 || real == torch::kInt64;
    TESSERA_REQUIRE(Error, supported, "allreduce_sum: Gloo cannot add ", tensor.dtype(),
                    " tensors: convert to float32, float64 or an integer type first");
  }
  if (!c.group || tensor.numel() == 0) return Request();
  Wire w = to_wire(tensor, /*copy_in=*/true, c.wire_device);
  auto op = c.group->allreduce_sum(w.wire);
  if (w.staged.defined()) op = std::make_shared<StagedOp>(op, w.staged, tensor);
  return Request(op);
}

void Communicator::broadcast(torch::Tensor tensor, int root) {
  Impl& c = *impl_;
  c.check_tensor(tensor, "broadcast");
  c.check_peer(root, "root", "broadcast");
  if (!c.group || tensor.numel() == 0) return;
  Wire w = to_wire(tensor, /*copy_in=*/c.rank == root, c.wire_device);
  auto op = c.group->broadcast(w.wire, root);
  if (w.staged.defined()) op = std::make_shared<StagedOp>(op, w.staged, tensor);
  op->wait();
}

void Communicator::barrier() {
  if (impl_->group) impl_->group->barrier()->wait();
}

}  // namespace tessera::comm
