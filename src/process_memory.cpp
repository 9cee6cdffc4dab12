#include "src/process_memory.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tessera {
namespace {

constexpr int kMmapThreshold = 4 << 20;
constexpr int kTrimThreshold = 32 << 20;

}  // namespace

void set_allocator_policy() {
#if defined(__GLIBC__)
  // A malloc setting of the user's own (GLIBC_TUNABLES=glibc.malloc....) wins.
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) return;
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
#endif
}

int64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmRSS:   123 kB"
  return -1;
}

}  // namespace tessera
