#include "src/fft/scratch_memory.h"

#include <cstdlib>

namespace tessera::fft_detail {
namespace {

// Each block starts with a header giving its usable size; the caller's
// pointer follows it at malloc's own alignment (pocketfft aligns further
// itself, by asking for more).
struct alignas(alignof(std::max_align_t)) Header {
  std::size_t capacity;
};

constexpr int kKept = 8;                      // blocks each thread keeps
constexpr std::size_t kLargest = 1 << 20;     // larger blocks go straight back to the system

// Plain data, never destroyed: a block may be freed after the reaper below
// has run at thread exit (pocketfft's plan cache, a static, frees its plans'
// blocks after the main thread's thread-locals are gone), and must then find
// a valid "closed" state.
struct ThreadBlocks {
  Header* kept[kKept];
  int count;
  bool closed;
};
thread_local ThreadBlocks blocks_of_this_thread = {};

// Returns the kept blocks to the system when the thread ends.
struct Reaper {
  bool armed = false;
  ~Reaper() {
    auto& b = blocks_of_this_thread;
    for (int i = 0; i < b.count; ++i) std::free(b.kept[i]);
    b.count = 0;
    b.closed = true;
  }
};
thread_local Reaper reaper;

ThreadBlocks& blocks() {
  reaper.armed = true;  // constructs the reaper on this thread's first use
  return blocks_of_this_thread;
}

}  // namespace

void* scratch_malloc(std::size_t bytes) {
  auto& b = blocks();
  // The newest block that fits without wasting more than half of itself.
  for (int i = b.count - 1; i >= 0; --i) {
    Header* h = b.kept[i];
    if (h->capacity >= bytes && h->capacity / 2 <= bytes) {
      b.kept[i] = b.kept[--b.count];
      return h + 1;
    }
  }
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + bytes));
  if (!h) return nullptr;
  h->capacity = bytes;
  return h + 1;
}

void scratch_free(void* block) {
  if (!block) return;
  Header* h = static_cast<Header*>(block) - 1;
  if (blocks_of_this_thread.closed || h->capacity > kLargest) return std::free(h);
  auto& b = blocks();  // (a thread may free blocks it never allocated)
  if (b.count == kKept) {  // the oldest goes back to the system
    std::free(b.kept[0]);
    for (int i = 1; i < kKept; ++i) b.kept[i - 1] = b.kept[i];
    --b.count;
  }
  b.kept[b.count++] = h;
}

}  // namespace tessera::fft_detail
