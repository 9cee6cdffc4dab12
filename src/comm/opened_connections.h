#pragma once
// Internal to src/comm: the TCP connections this process opened between two
// moments (those a Gloo process group made to its peers while it was being
// constructed), so that a rank that failed can cut them through the kernel.
// This reaches into no Gloo or c10d internals, which differ between LibTorch
// versions (ProcessGroupGloo's contexts_ and Gloo's Pair: closing the pairs
// that way left the peers waiting under LibTorch 2.11).
#include <sys/types.h>

#include <set>
#include <utility>
#include <vector>

namespace tessera::comm::detail {

class OpenedConnections {
 public:
  // Identities (inodes) of the sockets open in this process now.
  static std::set<ino_t> open_sockets();

  OpenedConnections() = default;
  // The connected TCP sockets open now whose inodes are not in `before`.
  explicit OpenedConnections(const std::set<ino_t>& before);

  size_t size() const { return sockets_.size(); }

  // shutdown(SHUT_RDWR) on each that is still open: the peers' pending reads
  // and writes on them fail at once, and so do this process's own.
  void shut_down() const;

 private:
  std::vector<std::pair<int, ino_t>> sockets_;  // descriptor, inode
};

}  // namespace tessera::comm::detail
