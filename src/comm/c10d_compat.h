#pragma once
// Internal to src/comm: the c10d headers, and every difference between
// LibTorch 1.13 and 2.x that the adapter meets (namespace compat). Included
// only by the adapter's files (c10d_*.cpp).
// The rest of the adapter uses only the API common to both:
//   TCPStore(host, TCPStoreOptions{port, isServer, numWorkers, waitWorkers,
//            timeout, multiTenant}), PrefixStore(prefix, store),
//   Store::set/get/check/wait, ProcessGroupGloo(store, rank, size, Options)
//   with Options::create(timeout)->devices, ProcessGroupNCCL::Options::create()
//   ->timeout, send/recv/allreduce/broadcast/barrier returning
//   intrusive_ptr<c10d::Work>, Work::wait(timeout)/isCompleted()/abort(),
//   c10::Error::what_without_backtrace().
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
}  // namespace tessera::comm::detail
