#include "train/output_location.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/error.h"
#include "src/io/atomic_file.h"
#include "train/result_file.h"

namespace tessera {

namespace {

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string directory_of(const std::string& path) {
  const auto dir = std::filesystem::path(path).parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

}  // namespace

void check_output_location(const std::string& result, const std::vector<std::string>& also_written,
                           const std::vector<std::string>& inputs, bool overwrite) {
  namespace fs = std::filesystem;
  TESSERA_REQUIRE(SettingsError, !result.empty(), "--output: the result file name is empty");
  std::vector<std::string> outputs{result};
  outputs.insert(outputs.end(), also_written.begin(), also_written.end());
  for (const auto& out : outputs)
    for (const auto& in : inputs)
      TESSERA_REQUIRE(SettingsError, !same_file(out, in), out, ": this output is the input file ", in,
                      "; writing it would destroy the data. Choose another --output");
  std::error_code ec;
  TESSERA_REQUIRE(SettingsError, !fs::is_directory(result, ec), result,
                  ": is a directory; --output needs a file name such as ", (fs::path(result) / "result.h5").string());
  const std::string dir = directory_of(result);
  TESSERA_REQUIRE(SettingsError, fs::is_directory(dir, ec), result, ": the output directory ", dir,
                  " does not exist; create it first (nothing was computed)");
  if (fs::exists(result, ec)) {
    TESSERA_REQUIRE(SettingsError, fs::is_regular_file(result, ec), result,
                    ": exists and is not a regular file; choose another --output");
    TESSERA_REQUIRE(SettingsError, overwrite || is_tessera_result(result), result,
                    ": exists and is not a tessera result file; it is kept. Choose another --output, or pass "
                    "--overwrite to replace it");
  }
  // The result is written by renaming a new file in the same directory, so
  // the directory must take a new file: try one now rather than after the run.
  const std::string probe = temporary_path_for(result);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  TESSERA_REQUIRE(SettingsError, fd >= 0, result, ": cannot create a file in the output directory ", dir, " (",
                  std::strerror(errno), "); nothing was computed");
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace tessera
