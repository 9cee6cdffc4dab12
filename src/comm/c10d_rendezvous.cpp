// Rendezvous and connection: the store (rank 0's or torchrun's agent's), the
// join of every rank, the backend (Gloo or NCCL) connected to every peer.
#include <signal.h>

#include <atomic>
#include <cstdlib>

#include "src/comm/c10d_group.h"
#include "src/comm/liveness.h"
#include "src/comm/opened_connections.h"

namespace tessera::comm::detail {

namespace {

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

}  // namespace

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
  const auto unreachable = [&](const std::string& msg) {
    return CommunicationError(concat(
        "rank ", rank, " could not connect to the rendezvous store at MASTER_ADDR:MASTER_PORT = ",
        store_address(), " (hosted by ", store_host(), ") within ", timeout_.count(),
        " ms: check that ", store_host(), " is running and that MASTER_ADDR/MASTER_PORT are "
        "right [", msg, "]"));
  };
  if (!host && !wait_for_listener(env_.master_addr, env_.master_port,
                                  std::chrono::steady_clock::now() + timeout_))
    throw unreachable("nothing accepted a connection there");
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
    throw unreachable(msg);
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


std::shared_ptr<Group> Group::create(const DistributedEnv& env, torch::Device device,
                                     std::chrono::milliseconds timeout) {
  ignore_sigpipe();
  auto group = std::make_shared<GroupImpl>(env, device, timeout);
  group->connect();
  return group;
}

}  // namespace tessera::comm::detail
