#include "src/comm/setup_agreement.h"

#include <cstring>
#include <exception>
#include <sstream>

#include <torch/torch.h>

#include "src/comm/communicator.h"
#include "src/error.h"

namespace tessera::comm {

namespace {

// Root's bytes on every rank (staged on the communicator's device: NCCL takes only GPU tensors).
std::string broadcast_text(Communicator& comm, const std::string& text, int root, int64_t length) {
  auto host = torch::zeros({length}, torch::kUInt8);
  if (comm.rank() == root && length > 0) std::memcpy(host.data_ptr(), text.data(), static_cast<size_t>(length));
  auto buf = host.to(comm.device());
  comm.broadcast(buf, root);
  host = buf.cpu().contiguous();
  return std::string(reinterpret_cast<const char*>(host.data_ptr()), static_cast<size_t>(length));
}

std::string first_difference(const std::string& mine, const std::string& root) {
  std::istringstream a(mine), b(root);
  std::string la, lb;
  while (true) {
    const bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
    if (!ha && !hb) return {};
    if (la != lb || ha != hb) {
      if (!ha) return "rank 0 has '" + lb + "', this rank has nothing";
      if (!hb) return "this rank has '" + la + "', rank 0 has nothing";
      return "this rank has '" + la + "' but rank 0 has '" + lb + "'";
    }
  }
}

}  // namespace

void agree_on_setup(Communicator* comm, const std::function<void()>& step) {
  std::exception_ptr failure;
  std::string message;
  try {
    step();
  } catch (const std::exception& e) {
    failure = std::current_exception();
    message = e.what();
  } catch (...) {
    failure = std::current_exception();
    message = "unknown error";
  }
  if (!comm || comm->size() == 1) {
    if (failure) std::rethrow_exception(failure);
    return;
  }
  // Lengths + 1, so that a failure with an empty message still counts.
  auto lengths = torch::zeros({comm->size()}, torch::kInt64);
  if (failure) lengths[comm->rank()] = static_cast<int64_t>(message.size()) + 1;
  lengths = lengths.to(comm->device());
  comm->allreduce_sum(lengths).wait();
  lengths = lengths.cpu();
  std::string others;
  for (int r = 0; r < comm->size(); ++r) {
    const int64_t n = lengths[r].item<int64_t>();
    if (n == 0) continue;
    const std::string text = broadcast_text(*comm, message + '\0', r, n);
    others += (others.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + ": " +
              text.substr(0, static_cast<size_t>(n - 1));
  }
  if (failure) std::rethrow_exception(failure);
  if (!others.empty()) throw Error("set-up failed on another rank (this is rank " + std::to_string(comm->rank()) +
                                   ", which stops too): " + others);
}

void require_same_settings(Communicator* comm, const std::string& lines) {
  if (!comm || comm->size() == 1) return;
  auto length = torch::tensor({static_cast<int64_t>(comm->rank() == 0 ? lines.size() : 0)}, torch::kInt64)
                    .to(comm->device());
  comm->broadcast(length, 0);
  const std::string root = broadcast_text(*comm, lines, 0, length.cpu().item<int64_t>());
  agree_on_setup(comm, [&] {
    const std::string diff = first_difference(lines, root);
    TESSERA_REQUIRE(SettingsError, diff.empty(), "the ranks were started with different settings: ", diff,
                    "; start every rank with the same options and data");
  });
}

}  // namespace tessera::comm
