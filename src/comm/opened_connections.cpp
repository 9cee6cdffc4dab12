#include "src/comm/opened_connections.h"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>

namespace tessera::comm::detail {
namespace {

// Calls f(fd, inode) for every socket descriptor of this process.
template <typename F>
void for_each_socket(F&& f) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return;
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == own) continue;
    struct stat st {};
    if (::fstat(static_cast<int>(fd), &st) == 0 && S_ISSOCK(st.st_mode))
      f(static_cast<int>(fd), st.st_ino);
  }
  ::closedir(dir);
}

bool is_connected_tcp(int fd) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening) return false;
  sockaddr_storage peer{};
  len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return false;
  return peer.ss_family == AF_INET || peer.ss_family == AF_INET6;
}

}  // namespace

std::set<ino_t> OpenedConnections::open_sockets() {
  std::set<ino_t> inodes;
  for_each_socket([&](int, ino_t inode) { inodes.insert(inode); });
  return inodes;
}

OpenedConnections::OpenedConnections(const std::set<ino_t>& before) {
  for_each_socket([&](int fd, ino_t inode) {
    if (!before.count(inode) && is_connected_tcp(fd)) sockets_.emplace_back(fd, inode);
  });
}

void OpenedConnections::shut_down() const {
  for (const auto& [fd, inode] : sockets_) {
    // The descriptor may have been closed and reused since: only the same socket.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == inode)
      ::shutdown(fd, SHUT_RDWR);
  }
}

}  // namespace tessera::comm::detail
