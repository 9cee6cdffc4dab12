#pragma once
namespace tessera {
// Sets LibTorch's intra-op thread count. requested > 0 wins; otherwise
// OMP_NUM_THREADS (torchrun sets it per rank) if set; otherwise every core.
// Debian's LibTorch starts with a single thread, so this must always be called.
// Returns the count in effect.
int configure_threads(int requested = 0);
}  // namespace tessera
