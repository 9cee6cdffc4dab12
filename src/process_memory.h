#pragma once
// The process's own memory: how freed memory is kept, and how much is resident.
#include <cstdint>

namespace tessera {

// Sets glibc's malloc to a fixed policy, called once at tool start (unless
// GLIBC_TUNABLES sets malloc tunables). By default glibc raises its mmap
// threshold to the size of each mapped block freed (up to 32 MiB) and keeps
// freed heap up to twice that: which arrays come from the heap, and how much
// freed heap stays resident, depend on the order of earlier frees. The same
// 4-rank paper-scale run (16632 x 128², 3 iterations) peaked between 475 and
// 568 MiB per rank, the excess moving from rank to rank between runs; a
// fixed 32 MiB threshold keeping 128 MiB of free heap made a binned 4D-STEM
// load (127² x 128², --bin 2) peak 113 MiB above this policy. Fixed here: blocks of 4 MiB and more are mapped and
// returned when freed, smaller ones come from the heap and are reused, and
// at most 32 MiB of free heap top is kept. Per-step arrays of 4 MiB and more
// are kept by their users (src/reusable_buffer.h), or fault in at each use:
// the fused loss's object gradient of one chunk, above 512 x 1024 pixels.
void set_allocator_policy();

// This process's resident set (VmRSS) in bytes, or -1 where /proc is not there.
int64_t resident_bytes();

}  // namespace tessera
