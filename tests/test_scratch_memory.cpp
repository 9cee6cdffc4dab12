// The heap behind pocketfft's scratch arrays (src/fft/scratch_memory.h).
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "src/fft/scratch_memory.h"

using namespace tessera::fft_detail;

TEST(ScratchMemory, AFreedBlockIsHandedOutAgainOnTheSameThread) {
  void* a = scratch_malloc(4096);
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, 4096);  // the whole block is usable
  scratch_free(a);
  void* b = scratch_malloc(4000);  // fits, and wastes under half
  EXPECT_EQ(a, b);
  scratch_free(b);
}

TEST(ScratchMemory, ABlockTooSmallOrTooLargeIsNotReused) {
  void* a = scratch_malloc(1024);
  scratch_free(a);
  void* bigger = scratch_malloc(2048);  // a is too small
  EXPECT_NE(bigger, a);
  void* smaller = scratch_malloc(100);  // a would waste more than half
  EXPECT_NE(smaller, a);
  void* again = scratch_malloc(1024);
  EXPECT_EQ(again, a);
  for (void* p : {bigger, smaller, again}) scratch_free(p);
}

TEST(ScratchMemory, BlocksLiveAcrossThreadsAndThreadExits) {
  // Allocated on one thread, freed on another (pocketfft's shared plan
  // cache does it), then that thread ends with blocks kept: nothing leaks or
  // is freed twice (the sanitizer and valgrind runs would say).
  std::vector<void*> blocks;
  for (int i = 0; i < 20; ++i) {
    blocks.push_back(scratch_malloc(256 + 64 * i));
    ASSERT_NE(blocks.back(), nullptr);
    std::memset(blocks.back(), i, 256 + 64 * i);
  }
  std::thread other([&] {
    for (void* p : blocks) scratch_free(p);
    // The freeing thread keeps the last 8 (1024 to 1472 bytes) and hands out
    // the newest that fits.
    void* fits = scratch_malloc(1400);
    EXPECT_EQ(fits, blocks[19]);
    void* next = scratch_malloc(1400);
    EXPECT_EQ(next, blocks[18]);  // 1408 bytes
    void* small = scratch_malloc(256);  // every kept block would waste over half
    EXPECT_NE(small, nullptr);
    // (Blocks 0-11 went back to the system, which may hand one out again.)
    for (int i = 12; i < 18; ++i) EXPECT_NE(small, blocks[i]);
    std::memset(fits, 1, 1400);
    std::memset(small, 2, 256);
    scratch_free(small);
    scratch_free(next);
    scratch_free(fits);
  });
  other.join();
  scratch_free(nullptr);  // as free(nullptr): nothing
  void* large = scratch_malloc(std::size_t(4) << 20);  // over the kept size: back to the system when freed
  ASSERT_NE(large, nullptr);
  scratch_free(large);
}
