#pragma once
// The heap behind pocketfft's own allocations (src/fft/pocketfft_build.inc
// points its malloc and free here). pocketfft allocates a scratch array for
// every 1-D transform it runs (cfftp::pass_all), 16 per 64 x 64 frame and
// direction in the fused loss: glibc's bins took 4 to 5 % of the demo's
// iteration in a profile. Here each thread keeps the few blocks it freed last
// and hands them out again, so the steady state makes no system allocation.
// A block may be freed by another thread than the one that allocated it
// (pocketfft's shared plan cache): it then joins that thread's blocks.
#include <cstddef>

namespace tessera::fft_detail {

void* scratch_malloc(std::size_t bytes);  // nullptr if the system is out of memory, as malloc
void scratch_free(void* block);            // block from scratch_malloc, or nullptr

}  // namespace tessera::fft_detail
