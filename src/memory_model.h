#pragma once
// Predicted memory of one tile (or of the undecomposed run, one tile holding
// everything), in bytes, and predicted halo traffic. Used by `tessera plan`
// and checked against measured peaks by the benchmarks.
#include <cstdint>
#include <string>
#include <vector>

#include "src/tiling.h"

namespace tessera {

struct MemoryModelInputs {
  int64_t slices = 1;
  int64_t probe_modes = 1;
  int64_t chunk_size = 64;           // patterns per forward/backward pass
  int64_t batch_size = 0;            // patterns per optimiser step over all tiles (0: unknown); a tile's
                                     // chunks then hold at most its share of a step
  int64_t real_bytes = 4;            // 4 (float) or 8 (double)
  int64_t optimizer_state_copies = 2;  // per parameter element: Adam 2, SGD/RMSprop/Adagrad 1
};

struct TileMemory {
  int64_t object = 0;        // object array (extent), its gradient and optimiser state
  int64_t probe = 0;         // probe, gradient, optimiser state
  int64_t patterns = 0;      // this tile's measured frames
  int64_t intermediates = 0; // autograd tensors of one chunk
  int64_t exchange = 0;      // halo pack/unpack buffers
  int64_t total() const { return object + probe + patterns + intermediates + exchange; }
};

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
