#pragma once
// Predicted memory of one tile (or of the undecomposed run, one tile holding
// everything), in bytes, and predicted halo traffic. Used by `tessera plan`
// and checked against measured peaks by the benchmarks.
#include <cstdint>
#include <string>
#include <vector>

#include "src/tiling.h"

namespace tessera {

// What a running reconstruction holds beyond a tessera process at start and
// beyond its arrays: LibTorch code paged in by the kernels it runs (libtorch_cpu
// grew from 26 to 43 MiB resident), the runtime's own heap (autograd, Gloo,
// HDF5). Measured once, on Debian 12's LibTorch 1.13 (CPU): a 144-pattern run
// of 64² (`tessera simulate --frame 64 --scan 12 --step 6`, 3 iterations,
// --no-defocus-search) peaked 30.5 MiB above `tessera plan`'s prediction
// without this term for 1 process, and 28 to 33 MiB per rank for 4 ranks.
inline constexpr int64_t kReconstructionRuntimeBytes = int64_t{30} << 20;

struct MemoryModelInputs {
  int64_t slices = 1;
  int64_t probe_modes = 1;
  int64_t chunk_size = 64;           // patterns per forward/backward pass
  int64_t batch_size = 0;            // patterns per optimiser step over all tiles (0: unknown); a tile's
                                     // chunks then hold at most its share of a step
  int64_t real_bytes = 4;            // 4 (float) or 8 (double)
  int64_t optimizer_state_copies = 2;  // per parameter element: Adam 2, SGD/RMSprop/Adagrad 1
  // Resident bytes of a reconstructing process besides its arrays (LibTorch,
  // its libraries, their static data, the runtime): `tessera plan` takes its
  // own resident size at start (same binary and libraries) plus
  // kReconstructionRuntimeBytes. 0 counts the arrays alone.
  int64_t baseline_bytes = 0;
  int64_t threads = 1;  // CPU threads per process (each holds one block of the fused loss)
};

struct TileMemory {
  int64_t baseline = 0;      // the process before any work (MemoryModelInputs::baseline_bytes)
  int64_t object = 0;        // object array (extent), its gradient and optimiser state
  int64_t probe = 0;         // probe, gradient, optimiser state
  int64_t patterns = 0;      // this tile's measured frames
  int64_t intermediates = 0; // per-step arrays of one chunk
  int64_t exchange = 0;      // halo pack/unpack buffers
  int64_t total() const { return baseline + object + probe + patterns + intermediates + exchange; }
};

// Patterns per block of the fused far-field loss: defined here, where the
// memory model needs it, and used by models/far_field_loss.h's
// fused_loss_block (models sit above src).
int64_t fused_loss_block_patterns(int64_t modes, int64_t h, int64_t w, int64_t complex_bytes);

// Bytes of complex elements per object/probe pixel is 2 * real_bytes.
TileMemory predict_tile_memory(const Tiling& tiling, int tile, int64_t frame_h, int64_t frame_w,
                               const MemoryModelInputs& in);
// The same data in one undecomposed process.
TileMemory predict_undecomposed_memory(const ScanGeometry& geometry, const MemoryModelInputs& in);
// Halo bytes a tile sends per optimiser step: gradient reduction out, refreshed values out.
int64_t predict_tile_bytes_sent(const Tiling& tiling, int tile, const MemoryModelInputs& in);
// The same for every tile at once, in one pass over the links (the per-tile
// calls cost O(links) each: minutes for the paper's 4158 tiles and 1M links).
std::vector<TileMemory> predict_all_tile_memory(const Tiling& tiling, int64_t frame_h, int64_t frame_w,
                                                const MemoryModelInputs& in);
std::vector<int64_t> predict_all_tile_bytes_sent(const Tiling& tiling, const MemoryModelInputs& in);

std::string format_bytes(double bytes);

}  // namespace tessera
