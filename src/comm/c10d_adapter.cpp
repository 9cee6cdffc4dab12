// The one adapter over c10d.  Every difference between LibTorch 1.13 and 2.x
// is in the "compat" block below; the rest uses the API common to both:
//   TCPStore(host, TCPStoreOptions{port, isServer, numWorkers, waitWorkers,
//            timeout, multiTenant}), PrefixStore(prefix, store),
//   Store::set/get/check/wait, ProcessGroupGloo(store, rank, size, Options)
//   with Options::create(timeout)->devices, ProcessGroupNCCL::Options::create()
//   ->timeout, send/recv/allreduce/broadcast/barrier returning
//   intrusive_ptr<c10d::Work>, Work::wait(timeout)/isCompleted()/abort(),
//   c10::Error::what_without_backtrace().
#include "src/comm/c10d_adapter.h"

#include <torch/version.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

// LibTorch's CMake package defines USE_C10D_GLOO (and, on CUDA builds with
// NCCL, USE_C10D_NCCL) for its consumers; without them these headers are empty.
// A pip LibTorch ships no Gloo headers (its Gloo is linked into
// libtorch_cpu): Debian's libgloo-dev provides them. Only handles to Gloo
// objects cross that boundary; nothing here calls into Gloo itself.
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(TESSERA_WITH_CUDA) && defined(USE_C10D_NCCL)
#define TESSERA_COMM_NCCL 1
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>

#include "src/comm/liveness.h"
#include "src/comm/opened_connections.h"
#include "src/error.h"

// ---------------------------------------------------------------------------
// LibTorch 1.13 / 2.x differences
// ---------------------------------------------------------------------------
#if TORCH_VERSION_MAJOR < 1 || (TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR < 13)
#error "src/comm needs LibTorch 1.13 or newer (c10d::Work)"
#endif
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

namespace tessera::comm::detail {
namespace compat {
#if TORCH_VERSION_MAJOR >= 2
// 2.x: ProcessGroupGloo/ProcessGroupNCCL derive from c10d::Backend
// (c10d::ProcessGroup became a front end that dispatches to backends).
using BackendBase = c10d::Backend;
// 2.x honours the TCPStore connect timeout in milliseconds.
inline std::chrono::milliseconds store_timeout(std::chrono::milliseconds t) { return t; }
#else
// 1.13: they derive from c10d::ProcessGroup.
using BackendBase = c10d::ProcessGroup;
// 1.13 truncates the TCPStore connect timeout to whole seconds and retries a
// refused connection (rank 0 not listening yet) only while a 1 s pause still
// ends before the deadline: round up and add that second, so that clients
// keep trying for about `t` (a 1 s timeout would allow a single attempt).
inline std::chrono::milliseconds store_timeout(std::chrono::milliseconds t) {
  const auto whole_seconds = std::chrono::ceil<std::chrono::seconds>(t);
  return std::chrono::duration_cast<std::chrono::milliseconds>(whole_seconds) +
         std::chrono::milliseconds(1000);
}
#endif
// c10d::Work in both (it was c10d::ProcessGroup::Work up to 1.12).
using Work = c10d::Work;
}  // namespace compat

namespace {

using ::tessera::detail::concat;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds elapsed_since(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t);
}

// c10::Error::what() appends a C++ backtrace: keep the message only, on one line.
std::string message_of(const std::exception_ptr& eptr, size_t max_chars = 300) {
  std::string s;
  try {
    std::rethrow_exception(eptr);
  } catch (const c10::Error& e) {
    s = e.what_without_backtrace();
  } catch (const std::exception& e) {
    s = e.what();
  } catch (...) {
    s = "unknown exception";
  }
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  // Gloo prefixes its messages with "[./gloo/transport/tcp/pair.cc:598] ".
  static const std::regex location(R"(\[[^\] ]*\.(cc|cpp|h|hpp):[0-9]+\] ?)");
  s = std::regex_replace(s, location, "");
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

enum class Cause { Timeout, Lost, Other };

Cause classify(const std::string& reason) {
  const std::string s = lower(reason);
  for (const char* w : {"timed out", "timeout", "time out"})
    if (s.find(w) != std::string::npos) return Cause::Timeout;
  for (const char* w : {"closed", "reset", "broken pipe", "refused", "eof", "end of file",
                        "connection lost", "abort"})
    if (s.find(w) != std::string::npos) return Cause::Lost;
  return Cause::Other;
}

// "1, 3-5, 9" (at most `max_items` items).
std::string rank_list(const std::vector<int>& ranks, size_t max_items = 16) {
  std::string out;
  size_t items = 0;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (items == max_items) return out + ", ...";
    if (!out.empty()) out += ", ";
    out += std::to_string(ranks[i]);
    if (j > i) out += (j == i + 1 ? ", " : "-") + std::to_string(ranks[j]);
    ++items;
    i = j + 1;
  }
  return out;
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

// Runs f on a detached thread and waits at most `limit` for it: a store whose
// host hangs would otherwise block a diagnosis forever.  f must own (capture by
// value) everything it touches.  Returns false when f did not finish in time.
bool run_bounded(milliseconds limit, std::function<void()> f) {
  struct Done {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto done = std::make_shared<Done>();
  std::thread([done, f = std::move(f)] {
    try {
      f();
    } catch (...) {
    }
    std::lock_guard<std::mutex> lk(done->m);
    done->done = true;
    done->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lk(done->m);
  return done->cv.wait_for(lk, limit, [&] { return done->done; });
}

// NCCL work completes on the GPU: poll it against our own deadline (Work::wait
// does not block the host unless TORCH_NCCL_BLOCKING_WAIT is set), then let
// wait() order the current stream after it and rethrow any error.
void wait_polling(compat::Work& work, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::microseconds(20);
  while (!work.isCompleted()) {
    if (Clock::now() >= deadline) {
      try {
        work.abort();
      } catch (...) {
      }
      throw std::runtime_error(
          concat("timed out after ", timeout.count(), " ms waiting for the operation"));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
  work.wait();
}

// Gloo writes with writev(), which raises SIGPIPE on a connection the peer
// has closed or reset, and SIGPIPE ends a process without a word.  Python,
// and so every torch.distributed program, ignores it; a C++ rank must do so
// itself, or a rank whose peer died (or hung up after a failure) vanishes
// instead of reporting.  A handler the program installed is left alone.
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
      ::signal(SIGPIPE, SIG_IGN);
  });
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

#ifdef USE_C10D_GLOO
// GLOO_SOCKET_IFNAME (as in torch.distributed) > loopback for a single-host
// job > the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const DistributedEnv& env) {
  try {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      std::string first(ifname);
      first = first.substr(0, first.find(','));
      return c10d::ProcessGroupGloo::createDeviceForInterface(first);
    }
    if (is_loopback(env.master_addr))
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
  } catch (const tessera::Error&) {
    throw;
  } catch (...) {
    throw SettingsError(concat("rank ", env.rank,
                                       ": cannot open a Gloo network device (GLOO_SOCKET_IFNAME=",
                                       std::getenv("GLOO_SOCKET_IFNAME") ? std::getenv("GLOO_SOCKET_IFNAME") : "",
                                       "): ", message_of(std::current_exception())));
  }
}

#endif

enum class Kind { Send, Recv, Allreduce, Broadcast, Barrier };

struct OpInfo {
  Kind kind;
  int peer = -1;  // dst/src, or the root of a broadcast
  int tag = 0;
  int64_t bytes = 0;
  Clock::time_point posted = Clock::now();
};

std::string describe(const OpInfo& op) {
  switch (op.kind) {
    case Kind::Send:
      return concat("isend of ", op.bytes, " bytes to rank ", op.peer, " (tag ", op.tag, ")");
    case Kind::Recv:
      return concat("irecv of ", op.bytes, " bytes from rank ", op.peer, " (tag ", op.tag, ")");
    case Kind::Allreduce:
      return concat("allreduce_sum of ", op.bytes, " bytes");
    case Kind::Broadcast:
      return concat("broadcast of ", op.bytes, " bytes from root rank ", op.peer);
    case Kind::Barrier:
      return "barrier";
  }
  return "operation";
}

bool is_p2p(Kind k) { return k == Kind::Send || k == Kind::Recv; }

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
    return submit({Kind::Send, dst, tag, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      return pg_->send(v, dst, tag);
    });
  }
  std::shared_ptr<PendingOp> recv(const torch::Tensor& t, int src, int tag) override {
    return submit({Kind::Recv, src, tag, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      return pg_->recv(v, src, tag);
    });
  }
  std::shared_ptr<PendingOp> allreduce_sum(const torch::Tensor& t) override {
    return submit({Kind::Allreduce, -1, 0, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      return pg_->allreduce(v, opts);
    });
  }
  std::shared_ptr<PendingOp> broadcast(const torch::Tensor& t, int root) override {
    return submit({Kind::Broadcast, root, 0, nbytes(t)}, [&] {
      std::vector<at::Tensor> v{t};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      return pg_->broadcast(v, opts);
    });
  }
  std::shared_ptr<PendingOp> barrier() override {
    return submit({Kind::Barrier}, [&] {
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

void C10dOp::blocking_wait() {
  std::string error;
  try {
    if (group_->polls())
      wait_polling(*work_, group_->timeout());
    else
      work_->wait(group_->timeout());  // Gloo also enforces Options::timeout itself
  } catch (...) {
    error = group_->failure_message(info_, message_of(std::current_exception()));
  }
  std::lock_guard<std::mutex> lk(m_);
  state_ = error.empty() ? State::Done : State::Failed;
  error_ = std::move(error);
  cv_.notify_all();
}

void C10dOp::wait() {
  std::unique_lock<std::mutex> lk(m_);
  if (state_ == State::Idle) {
    state_ = State::Waiting;
    lk.unlock();
    blocking_wait();
    lk.lock();
  }
  // Another thread (the background waiter) is waiting: it has its own deadline.
  cv_.wait(lk, [&] { return state_ == State::Done || state_ == State::Failed; });
  if (state_ == State::Failed) throw CommunicationError(error_);
}

bool C10dOp::completed() {
  std::unique_lock<std::mutex> lk(m_);
  if (state_ == State::Done || state_ == State::Failed) return true;
  if (pollable_) {
    try {
      return work_->isCompleted();
    } catch (...) {
      return true;  // wait() will report the error
    }
  }
  if (state_ == State::Idle) {
    state_ = State::Waiting;
    std::thread([self = shared_from_this()] { self->blocking_wait(); }).detach();
  }
  return false;
}

std::string GroupImpl::failure_message(const OpInfo& op, const std::string& reason) {
  const auto ms = elapsed_since(op.posted).count();
  const Cause cause = classify(reason);
  std::string why;
  if (is_p2p(op.kind)) {
    const int p = op.peer;
    if (cause == Cause::Timeout)
      why = concat("rank ", p, " made no progress within the timeout of ", timeout_.count(),
                   " ms (rank ", p, " hangs, is stalled, or died without closing its connections)");
    else if (cause == Cause::Lost)
      why = concat("the connection to rank ", p, " was lost (rank ", p, " died or exited)");
    else
      why = concat("communication with rank ", p, " failed");
  } else {
    if (cause == Cause::Timeout)
      why = concat("a peer rank is missing: no progress within the timeout of ", timeout_.count(),
                   " ms (a rank hangs, is stalled, or died)");
    else if (cause == Cause::Lost)
      why = "a peer rank is missing: a connection was lost (a rank died or exited)";
    else
      why = "a peer rank is missing or failed";
  }
  const std::string report =
      concat(describe(op), " failed after ", ms, " ms: ", why, " [", backend_, ": ", reason, "]");
  return concat("rank ", env_.rank, ": ", report, ". ", diagnose(report));
}

// Publishes this rank's failure in the store, hangs up on every peer (so
// that ranks blocked on this one, rather than on the culprit, fail now and
// report while the store is still up), then collects the others' reports
// until every rank has either reported or is known to be gone, or the grace
// period ends.  A rank that did not report is named as dead only on evidence:
// its liveness socket refuses connections (its process has ended).  A silent
// rank whose process still exists is a hung or slow one.  Rank 0, when it
// hosts the store, also waits until the ranks that reported have read the
// others' reports, since its exit takes the store down.  Runs once per group.
std::string GroupImpl::diagnose(const std::string& own_report) {
  std::lock_guard<std::mutex> guard(diag_mutex_);
  if (diagnosis_) return *diagnosis_;

  struct Result {
    std::mutex m;
    std::vector<std::optional<std::string>> reports;
    std::vector<Liveness> liveness;  // of the ranks that did not report, at the last probe
    bool store_reached = false;      // at least one full pass over the reports
    std::string store_error;
  };
  auto result = std::make_shared<Result>();
  const auto size = static_cast<size_t>(env_.world_size);
  result->reports.resize(size);
  result->liveness.assign(size, Liveness::Unknown);
  // Long enough that, on a loaded machine, the ranks that a death also broke
  // report too; ranks still silent then are named as what the probe says.
  const milliseconds grace = std::clamp(timeout_ / 5, milliseconds(20), milliseconds(1000));
  const milliseconds limit = grace + milliseconds(2000);
  const bool hosts_store = !env_.use_agent_store && env_.rank == 0;
  const bool finished = run_bounded(
      limit, [store = store_, rank = env_.rank, size, grace, result, hosts_store,
              addresses = peer_addresses_, hang_up = hang_up_, own = own_report.substr(0, 400)] {
        const auto key = [](const char* what, size_t q) { return concat("diag/", what, "/", q); };
        bool store_ok = true;
        Clock::time_point store_failed;
        // Every store access goes through here: once the store failed (its
        // host is gone), what was read before is kept and probing goes on.
        const auto with_store = [&](const std::function<void()>& f) {
          if (!store_ok) return false;
          try {
            f();
            return true;
          } catch (...) {
            store_ok = false;
            store_failed = Clock::now();
            std::lock_guard<std::mutex> lk(result->m);
            result->store_error = message_of(std::current_exception(), 200);
            return false;
          }
        };
        const auto read_report = [&](size_t q) {
          with_store([&] {
            if (!store->check({key("failed", q)})) return;
            const auto v = store->get(key("failed", q));
            std::lock_guard<std::mutex> lk(result->m);
            result->reports[q] = std::string(v.begin(), v.end());
          });
        };
        const auto reported = [&](size_t q) {
          std::lock_guard<std::mutex> lk(result->m);
          return result->reports[q].has_value();
        };

        with_store([&] { store->set(key("failed", static_cast<size_t>(rank)), bytes_of(own)); });
        if (hang_up) hang_up();
        const auto until = Clock::now() + grace;
        std::vector<Liveness> liveness(size, Liveness::Unknown);
        for (;;) {
          for (size_t q = 0; q < size; ++q)
            if (static_cast<int>(q) != rank && !reported(q)) read_report(q);
          if (store_ok) {
            std::lock_guard<std::mutex> lk(result->m);
            result->store_reached = true;
          }
          // Probe the silent ranks (a bounded number per pass: each costs a socket).
          std::vector<size_t> silent;
          std::vector<std::string> silent_addresses;
          for (size_t q = 0; q < size && silent.size() < 256; ++q) {
            if (static_cast<int>(q) == rank || reported(q) || liveness[q] == Liveness::Gone) continue;
            silent.push_back(q);
            silent_addresses.push_back(q < addresses.size() ? addresses[q] : std::string());
          }
          const auto probed = probe_liveness(silent_addresses, std::min(milliseconds(200), grace));
          for (size_t i = 0; i < silent.size(); ++i) {
            // A probe that got no answer in time (a loaded machine) says
            // less than an earlier one that did.
            if (probed[i] != Liveness::Unknown) liveness[silent[i]] = probed[i];
            // It may have reported and exited between the read and the probe.
            if (probed[i] == Liveness::Gone) read_report(silent[i]);
          }
          {
            std::lock_guard<std::mutex> lk(result->m);
            result->liveness = liveness;
          }
          bool settled = true;
          for (size_t q = 0; q < size && settled; ++q) {
            if (static_cast<int>(q) == rank || liveness[q] == Liveness::Gone) continue;
            if (!reported(q)) {
              settled = false;
            } else if (hosts_store) {
              with_store([&] { settled = store->check({key("read", q)}); });
            }
          }
          // Without the store no report can come; probe a little longer only
          // in case a process that just died is still closing its sockets.
          const bool pointless = !store_ok && Clock::now() >= store_failed + milliseconds(100);
          if (settled || pointless || Clock::now() >= until) break;
          std::this_thread::sleep_for(std::min(milliseconds(50), grace));
        }
        with_store([&] { store->set(key("read", static_cast<size_t>(rank)), bytes_of("1")); });
      });

  std::lock_guard<std::mutex> lk(result->m);
  std::string text;
  if (!result->store_reached) {
    if (!finished)
      text = concat("The rendezvous store at ", store_address(), " (hosted by ", store_host(),
                    ") did not answer within ", limit.count(), " ms, so the other ranks' state "
                    "is unknown (", store_host(), " may hang).");
    else
      text = concat("The rendezvous store at ", store_address(), " cannot be reached (",
                    result->store_error, "): its host, ", store_host(),
                    ", has probably died or exited.");
  }
  std::vector<int> gone, alive, unknown;
  std::string reports;
  int listed = 0, reported = 0;
  for (int q = 0; q < env_.world_size; ++q) {
    if (q == env_.rank) continue;
    const auto& r = result->reports[static_cast<size_t>(q)];
    if (!r) {
      switch (result->liveness[static_cast<size_t>(q)]) {
        case Liveness::Gone: gone.push_back(q); break;
        case Liveness::Alive: alive.push_back(q); break;
        case Liveness::Unknown: unknown.push_back(q); break;
      }
      continue;
    }
    ++reported;
    if (listed < 4) {
      reports += concat(listed ? "; " : "", "rank ", q, ": ", r->substr(0, 240));
      ++listed;
    }
  }
  const auto ranks = [](const std::vector<int>& v) {
    return concat(v.size() > 1 ? "Ranks " : "Rank ", rank_list(v));
  };
  const auto space = [&] { return text.empty() ? "" : " "; };
  if (reported > 0)
    text += concat(space(), "Other ranks reported errors (", reported, "): ", reports,
                   reported > listed ? "; ..." : "", ".");
  if (!gone.empty())
    text += concat(space(), ranks(gone), " died or exited",
                   result->store_error.empty() ? " without reporting an error"
                                               : " (whether after reporting an error is unknown)",
                   ": nothing accepts connections at ", gone.size() > 1 ? "their" : "its",
                   " liveness address any more.");
  if (!alive.empty())
    text += concat(space(), ranks(alive), " still ", alive.size() > 1 ? "run" : "runs",
                   " but reported no error (hung, stalled, or not yet affected).");
  if (!unknown.empty())
    text += concat(space(), "No error report from rank", unknown.size() > 1 ? "s " : " ",
                   rank_list(unknown), " (dead, hung, or not yet affected).");
  if (result->store_reached && gone.empty() && alive.empty() && unknown.empty())
    text += concat(space(), "Every other rank reported an error.");
  if (result->store_reached && !result->store_error.empty())
    text += concat(" (The store at ", store_address(), " went away meanwhile: its host, ",
                   store_host(), ", has exited or died.)");
  diagnosis_ = text;
  return text;
}

void GroupImpl::connect() {
  const int rank = env_.rank, size = env_.world_size;
  if (device_.is_cuda()) {
#ifdef TESSERA_COMM_NCCL
    nccl_ = true;
    backend_ = "nccl";
#else
    throw SettingsError(
        "CUDA tensors between ranks need NCCL, which this build lacks (it needs a CUDA "
        "LibTorch with NCCL and TESSERA_WITH_CUDA): use the CPU device");
#endif
  } else {
#ifndef USE_C10D_GLOO
    throw SettingsError(
        "this LibTorch was built without Gloo (USE_C10D_GLOO): CPU tensors cannot be "
        "exchanged between ranks");
#endif
  }

  // 1. The rendezvous store, created as torch.distributed's env:// rendezvous
  //    does: the torchrun agent's store (client everywhere, prefix
  //    /worker/attempt_<restarts>) or rank 0 hosts it (multi-tenant).
  const bool host = !env_.use_agent_store && rank == 0;
  // Opened before the store and the backend's sockets, so that a dying
  // process closes it first (descriptors close in order): whoever sees the
  // store or a connection fail then finds it closed too.
  const std::string liveness = liveness_address(env_.master_addr, env_.master_port);
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(env_.master_port);
  opts.isServer = host;
  opts.numWorkers = static_cast<std::size_t>(size);
  opts.waitWorkers = false;  // the join step below names the missing ranks
  opts.timeout = compat::store_timeout(timeout_);
  opts.multiTenant = host;
  c10::intrusive_ptr<c10d::Store> base;
  try {
    base = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, opts);
  } catch (...) {
    const std::string msg = message_of(std::current_exception());
    if (host) {
      const std::string l = lower(msg);
      const bool busy = l.find("in use") != std::string::npos ||
                        l.find("errno: 98") != std::string::npos ||
                        l.find("eaddrinuse") != std::string::npos;
      throw CommunicationError(concat(
          "rank 0 could not host the rendezvous store on MASTER_ADDR:MASTER_PORT = ",
          store_address(), ": ",
          busy ? "the port is already in use (another job or process holds it): choose another "
                 "MASTER_PORT, or let torchrun --standalone pick a free one"
               : "cannot listen on that port",
          " [", msg, "]"));
    }
    throw CommunicationError(concat(
        "rank ", rank, " could not connect to the rendezvous store at MASTER_ADDR:MASTER_PORT = ",
        store_address(), " (hosted by ", store_host(), ") within ", opts.timeout.count(),
        " ms: check that ", store_host(), " is running and that MASTER_ADDR/MASTER_PORT are "
        "right [", msg, "]"));
  }
  if (env_.use_agent_store)
    base = c10::make_intrusive<c10d::PrefixStore>(
        "/worker/attempt_" + std::to_string(env_.restart_count), base);
  // Communicators are created in the same order on every rank: number them so
  // that a second one in the same job does not read the first one's keys.
  static std::atomic<int> generation{0};
  store_ = c10::make_intrusive<c10d::PrefixStore>(
      "tessera/" + std::to_string(generation.fetch_add(1)), base);

  // 2. Wait until every rank has joined, naming those that did not.  Each
  //    joins with its liveness address: read now, while the store is surely
  //    up, since a failure may take the store down with it.
  try {
    store_->set("join/" + std::to_string(rank), bytes_of(liveness));
    std::vector<std::string> keys;
    for (int q = 0; q < size; ++q) keys.push_back("join/" + std::to_string(q));
    store_->wait(keys, timeout_);
    peer_addresses_.resize(static_cast<size_t>(size));
    for (int q = 0; q < size; ++q) {
      if (q == rank) continue;
      const auto v = store_->get(keys[static_cast<size_t>(q)]);
      peer_addresses_[static_cast<size_t>(q)] = std::string(v.begin(), v.end());
    }
  } catch (...) {
    const std::string msg = message_of(std::current_exception());
    std::vector<int> missing;
    try {
      for (int q = 0; q < size; ++q)
        if (!store_->check({"join/" + std::to_string(q)})) missing.push_back(q);
    } catch (...) {
    }
    throw CommunicationError(concat(
        "rank ", rank, ": ",
        missing.empty() ? std::string("not all ranks") : concat("rank", missing.size() > 1 ? "s " : " ", rank_list(missing)),
        " of WORLD_SIZE=", size, " did not join within ", timeout_.count(),
        " ms (not started, crashed during start-up, or cannot reach the store at ",
        store_address(), ") [", msg, "]"));
  }

  // 3. The backend, connected to every peer.
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("pg", store_);
  try {
    if (nccl_) {
#ifdef TESSERA_COMM_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_.index()));
      auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
      nccl_opts->timeout = timeout_;
      pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg_store, rank, size, nccl_opts);
#endif
    } else {
#ifdef USE_C10D_GLOO
      auto gloo_opts = c10d::ProcessGroupGloo::Options::create(timeout_);
      gloo_opts->devices.push_back(gloo_device(env_));
      // A Gloo process group that can hang up on its peers: without that, a
      // peer blocked in an operation with a failed rank (rather than with the
      // dead one) notices nothing until that rank exits or its own timeout
      // expires, and by then the store, which rank 0 hosts, may be gone. The
      // connections it opens while it connects to every peer are its pairs.
      const auto before = OpenedConnections::open_sockets();
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, rank, size, gloo_opts);
      hang_up_ = [pairs = OpenedConnections(before)] { pairs.shut_down(); };
#endif
    }
  } catch (const tessera::Error&) {
    throw;
  } catch (...) {
    throw CommunicationError(concat("rank ", rank, ": connecting ", backend_, " to all ", size,
                                    " ranks failed within ", timeout_.count(), " ms [",
                                    message_of(std::current_exception()), "]"));
  }

  // 4. Everybody is connected (and done with the store, which rank 0 may
  //    take down when it exits) once a barrier passes.
  barrier()->wait();
}

}  // namespace

std::shared_ptr<Group> Group::create(const DistributedEnv& env, torch::Device device,
                                     std::chrono::milliseconds timeout) {
  ignore_sigpipe();
  auto group = std::make_shared<GroupImpl>(env, device, timeout);
  group->connect();
  return group;
}

}  // namespace tessera::comm::detail
