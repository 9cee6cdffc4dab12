#pragma once
// Internal to src/comm: whether another rank's process still exists, asked
// of its kernel rather than of the rank itself.  Every process listens on one
// TCP socket that nothing ever accepts from and that lives until the process
// ends.  Once the process has died or exited, the kernel closes that socket
// and a connection to it is refused; while the process runs, hangs, is
// stopped or is merely slow, the kernel still completes the connection.  So
// a failing rank can tell a dead peer from a survivor that has not noticed
// the failure yet, however loaded the machine is.
#include <chrono>
#include <string>
#include <vector>

namespace tessera::comm::detail {

// "host port" of this process's socket, on the local address that routes to
// `toward_host` (the rendezvous host, which every rank reaches); opened on the
// first call.  Empty when it cannot be opened: the other ranks then cannot
// tell whether this one is alive, and say so.
std::string liveness_address(const std::string& toward_host, int toward_port);

enum class Liveness {
  Gone,    // the connection was refused: the process died or exited
  Alive,   // connected: the process exists (running, hung or stopped)
  Unknown  // no address, or no answer within the limit (host down, overloaded, filtered)
};

// Connects to all `addresses` at once and waits at most `limit` in total.
std::vector<Liveness> probe_liveness(const std::vector<std::string>& addresses,
                                     std::chrono::milliseconds limit);

// Whether something accepts TCP connections on host:port before `deadline`,
// trying every 10-100 ms (the connection is closed at once).  LibTorch 2.x's
// TCPStore client retries a refused connection with a growing back-off whose
// last pause can end seconds after its timeout; waiting here first keeps a
// rank's "store unreachable" error on time, and the store then connects at
// its first try.
bool wait_for_listener(const std::string& host, int port,
                       std::chrono::steady_clock::time_point deadline);

}  // namespace tessera::comm::detail
