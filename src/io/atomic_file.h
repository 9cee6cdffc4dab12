#pragma once
// Writing a file so that readers never see it half written: the content goes
// to a temporary file in the same directory (same file system), which is
// synced and then renamed over the destination. If the writer throws, the
// temporary file is removed and the destination is left untouched.
#include <functional>
#include <string>

namespace tessera {

// Calls writer(tmp_path), where tmp_path is a fresh name in the directory of
// path (".<name>.tmp-<pid>-<n>"), then renames tmp_path to path. The writer
// must have closed tmp_path when it returns. Exceptions from the writer are
// rethrown after the temporary file is removed; failures to sync or rename
// throw tessera::Error naming the path.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& writer);

// The temporary name write_atomically uses for path (unique per call).
std::string temporary_path_for(const std::string& path);

}  // namespace tessera
