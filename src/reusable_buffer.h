#pragma once
// Per-step temporaries kept from call to call, one array per (thread, slot).
//
// glibc maps every allocation above its largest mmap threshold (32 MiB) afresh
// and unmaps it when freed, so each page of such a temporary faults in again
// at every use: 2304 patterns of 256² in chunks of 64 made two 32 MiB arrays
// per chunk, 523k minor page faults and 1.2 s of system time per iteration
// (0.5k and 0.013 s kept). A kept array costs its size once; the memory model
// counts it with the chunk's intermediates.
//
// The array returned is only valid until the same thread asks for the same
// slot again: for temporaries that do not escape the call that asked.
#include <cstdint>

#include <torch/torch.h>

namespace tessera {

enum class BufferSlot : int { fused_window_gradients = 0, fused_probe_partials, count };

// An uninitialised array of `sizes` and `options`, reusing this thread's
// array of the slot when it is large enough and of the same dtype and device.
torch::Tensor reusable_buffer(BufferSlot slot, torch::IntArrayRef sizes, const torch::TensorOptions& options);

}  // namespace tessera
