#include "src/io/atomic_file.h"

#include <fcntl.h>
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
