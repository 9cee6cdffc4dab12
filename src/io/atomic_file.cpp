#include "src/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "src/error.h"

namespace tessera {

namespace {

std::string directory_of(const std::string& path) {
  std::filesystem::path p(path);
  auto dir = p.parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

// fsync a file or directory by name; best effort for directories.
bool sync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return directory;  // some file systems do not allow opening directories
  bool ok = ::fsync(fd) == 0 || directory;
  ::close(fd);
  return ok;
}

// Temporary files being written, removed by a SIGTERM or SIGINT handler (a
// job killed by its batch system or Ctrl-C during a checkpoint would leave
// them behind). Fixed slots, so that the handler only reads plain memory and
// calls unlink (async-signal-safe).
constexpr int kSlots = 16;
constexpr size_t kPathBytes = 4096;
char pending_paths[kSlots][kPathBytes];
std::atomic<bool> pending_used[kSlots];
struct sigaction previous_term, previous_int;

void remove_pending_and_reraise(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (pending_used[i].load()) ::unlink(pending_paths[i]);
  // Then whatever would have happened without us (default: terminate).
  ::sigaction(sig, sig == SIGTERM ? &previous_term : &previous_int, nullptr);
  ::raise(sig);
}

void install_handler_once() {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = remove_pending_and_reraise;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    // Only where nobody else handles the signal (an embedding program may).
    struct sigaction now {};
    if (::sigaction(SIGTERM, nullptr, &now) == 0 && now.sa_handler == SIG_DFL) ::sigaction(SIGTERM, &sa, &previous_term);
    if (::sigaction(SIGINT, nullptr, &now) == 0 && now.sa_handler == SIG_DFL) ::sigaction(SIGINT, &sa, &previous_int);
    return true;
  }();
  (void)installed;
}

// Registers path for removal on a signal while it lives.
class PendingTemporary {
 public:
  explicit PendingTemporary(const std::string& path) {
    if (path.size() >= kPathBytes) return;
    install_handler_once();
    for (int i = 0; i < kSlots; ++i) {
      bool expected = false;
      if (pending_used[i].load() || !claimed_[i].compare_exchange_strong(expected, true)) continue;
      std::memcpy(pending_paths[i], path.c_str(), path.size() + 1);
      pending_used[i].store(true);
      slot_ = i;
      return;
    }
  }
  ~PendingTemporary() {
    if (slot_ < 0) return;
    pending_used[slot_].store(false);
    claimed_[slot_].store(false);
  }
  PendingTemporary(const PendingTemporary&) = delete;
  PendingTemporary& operator=(const PendingTemporary&) = delete;

 private:
  static inline std::atomic<bool> claimed_[kSlots];
  int slot_ = -1;
};

}  // namespace

std::string temporary_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  std::filesystem::path p(path);
  std::string name = "." + p.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                     std::to_string(counter++);
  return (p.parent_path() / name).string();
}

void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& writer) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) throw Error("write_atomically: empty file name");
  if (fs::is_directory(path, ec)) throw Error(path + ": is a directory; cannot write a file there");
  const std::string dir = directory_of(path);
  if (!fs::is_directory(dir, ec)) throw Error(path + ": cannot write: directory " + dir + " does not exist");

  const std::string tmp = temporary_path_for(path);
  const PendingTemporary removed_on_signal(tmp);
  try {
    writer(tmp);
    if (!fs::exists(tmp, ec)) throw Error(path + ": cannot write: the writer did not create " + tmp);
    if (!sync_path(tmp, false))
      throw Error(path + ": cannot write: syncing " + tmp + " to disk failed: " + std::strerror(errno));
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(path + ": cannot write: renaming " + tmp + " failed: " + std::strerror(errno));
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  sync_path(dir, true);
}

}  // namespace tessera
