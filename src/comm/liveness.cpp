#include "src/comm/liveness.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

namespace tessera::comm::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct addrinfo* resolve(const std::string& host, const std::string& port, int socktype, int flags) {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = flags;
  struct addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return nullptr;
  return found;
}

// A non-blocking connection to `ai` begun: the socket (-1 if none could be
// made) and 0 (connected), EINPROGRESS (pending: poll for POLLOUT, then
// connection_error) or the errno of a refusal or failure.
std::pair<int, int> begin_connect(const struct addrinfo* ai) {
  const int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return {-1, errno};
  return {fd, ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno};
}

// The outcome of a pending connection once poll() reported it: 0 or its errno.
int connection_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  return ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : errno;
}

// The local address a packet to host:port would leave from (connecting a UDP
// socket sends nothing).
bool local_address_toward(const std::string& host, int port, sockaddr_storage& local, socklen_t& len) {
  struct addrinfo* found = resolve(host, std::to_string(port), SOCK_DGRAM, 0);
  bool ok = false;
  for (auto* ai = found; ai && !ok; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    len = sizeof local;
    ok = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
         ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0;
    ::close(fd);
  }
  if (found) ::freeaddrinfo(found);
  return ok;
}

// Opens the socket; it is never closed, so that only the end of the process
// closes it.  Close-on-exec: a child this process starts must not keep it open.
std::string open_listener(const std::string& toward_host, int toward_port) {
  sockaddr_storage local{};
  socklen_t len = 0;
  if (!local_address_toward(toward_host, toward_port, local, len)) return {};
  if (local.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in&>(local).sin_port = 0;
  else if (local.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6&>(local).sin6_port = 0;
  else
    return {};
  const int fd = ::socket(local.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0 || ::listen(fd, SOMAXCONN) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    ::close(fd);
    return {};
  }
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&local), len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    ::close(fd);
    return {};
  }
  return std::string(host) + " " + port;
}

}  // namespace

std::string liveness_address(const std::string& toward_host, int toward_port) {
  static std::once_flag once;
  static std::string address;
  std::call_once(once, [&] { address = open_listener(toward_host, toward_port); });
  return address;
}

std::vector<Liveness> probe_liveness(const std::vector<std::string>& addresses,
                                     std::chrono::milliseconds limit) {
  std::vector<Liveness> result(addresses.size(), Liveness::Unknown);
  std::vector<pollfd> pending;
  std::vector<size_t> index_of;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const auto space = addresses[i].rfind(' ');
    if (space == std::string::npos) continue;
    struct addrinfo* found = resolve(addresses[i].substr(0, space), addresses[i].substr(space + 1),
                                     SOCK_STREAM, AI_NUMERICHOST | AI_NUMERICSERV);
    if (!found) continue;
    const auto [fd, err] = begin_connect(found);
    ::freeaddrinfo(found);
    if (fd < 0) continue;
    if (err == EINPROGRESS) {
      pending.push_back({fd, POLLOUT, 0});
      index_of.push_back(i);
      continue;
    }
    if (err == 0) result[i] = Liveness::Alive;
    if (err == ECONNREFUSED) result[i] = Liveness::Gone;
    ::close(fd);
  }

  const auto deadline = Clock::now() + limit;
  size_t open = pending.size();
  while (open > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    const int n = ::poll(pending.data(), pending.size(), static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (size_t k = 0; k < pending.size(); ++k) {
      if (pending[k].fd < 0 || pending[k].revents == 0) continue;
      const int err = connection_error(pending[k].fd);
      result[index_of[k]] = err == 0              ? Liveness::Alive
                            : err == ECONNREFUSED ? Liveness::Gone
                                                  : Liveness::Unknown;
      ::close(pending[k].fd);
      pending[k].fd = -1;  // poll() skips negative descriptors
      --open;
    }
  }
  for (const auto& p : pending)
    if (p.fd >= 0) ::close(p.fd);
  return result;
}

bool wait_for_listener(const std::string& host, int port, Clock::time_point deadline) {
  auto pause = std::chrono::milliseconds(10);
  for (;;) {
    // Resolved on every try: a name that does not resolve yet (DNS still
    // catching up with a just-started node) may resolve later.
    struct addrinfo* found = resolve(host, std::to_string(port), SOCK_STREAM, 0);
    for (auto* ai = found; ai; ai = ai->ai_next) {
      auto [fd, err] = begin_connect(ai);
      if (fd < 0) continue;
      if (err == EINPROGRESS) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{fd, POLLOUT, 0};
        if (left.count() > 0 && ::poll(&p, 1, static_cast<int>(left.count())) == 1) err = connection_error(fd);
      }
      ::close(fd);
      if (err == 0) {
        ::freeaddrinfo(found);
        return true;
      }
    }
    if (found) ::freeaddrinfo(found);
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

}  // namespace tessera::comm::detail
