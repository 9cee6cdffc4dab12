#include "src/memory_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tessera {
namespace {

// total_patterns: of the whole scan (for the tile's share of a step).
TileMemory predict(int64_t extent_pixels, int64_t patterns, int64_t total_patterns, int64_t frame_h, int64_t frame_w,
                   int64_t exchange_pixels, const MemoryModelInputs& in) {
  const int64_t c = 2 * in.real_bytes;  // one complex element
  const int64_t copies = 2 + in.optimizer_state_copies;  // value + gradient + state
  const int64_t frame = frame_h * frame_w;
  TileMemory m;
  m.object = in.slices * extent_pixels * c * copies;
  m.probe = in.probe_modes * frame * c * copies;
  m.patterns = patterns * frame * in.real_bytes;
  // A chunk holds at most chunk_size patterns, and at most the tile's share
  // of one optimiser step (a step's patterns are split among the tiles). The
  // steps draw patterns at random: the share is allowed 3 standard
  // deviations above its mean.
  int64_t per_step = std::max<int64_t>(patterns, 1);
  if (in.batch_size > 0 && total_patterns > 0) {
    const double mean = static_cast<double>(patterns) * static_cast<double>(std::min(in.batch_size, total_patterns)) /
                        static_cast<double>(total_patterns);
    per_step = std::min(per_step, static_cast<int64_t>(std::ceil(mean + 3 * std::sqrt(mean))));
  }
  const int64_t chunk = std::min<int64_t>(in.chunk_size, per_step);
  if (in.slices == 1) {
    // The fused far-field loss (models/far_field_loss.h) keeps nothing of size
    // (patterns, modes, h, w): the chunk's window gradients, one probe
    // gradient per block of patterns (both kept from step to step), the
    // chunk's object gradient until it is added to the tile's, and per thread
    // one block of windows, exit waves, far fields and their adjoints.
    const int64_t per_block = fused_loss_block_patterns(in.probe_modes, frame_h, frame_w, c);
    const int64_t blocks = (chunk + per_block - 1) / per_block;
    m.intermediates = chunk * frame * c + blocks * in.probe_modes * frame * c + extent_pixels * c +
                      in.threads * per_block * frame * c * (1 + 3 * in.probe_modes);
  } else {
    // Multislice runs through autograd. Per pattern of a chunk, at the peak
    // of its backward pass: 2 complex arrays per slice (window patches and
    // their gradient) and 4 per mode and slice (exit and far-field waves,
    // forward and backward). Measured with bench_distributed on LibTorch 1.13
    // CPU, one slice, before the single-slice loss was fused (16 + 32 M bytes
    // per frame pixel); not re-measured for multislice.
    const int64_t per_pattern = frame * c * (2 * in.slices + 4 * in.probe_modes * in.slices);
    m.intermediates = chunk * per_pattern;
  }
  m.baseline = in.baseline_bytes;
  m.exchange = 2 * in.slices * exchange_pixels * c;
  return m;
}

}  // namespace

int64_t fused_loss_block_patterns(int64_t modes, int64_t h, int64_t w, int64_t complex_bytes) {
  // About 128 KiB of exit waves per block: with the far field, the gradient
  // and the patches it is a few hundred KiB, inside a core's L2 cache.
  constexpr int64_t kBlockBytes = 128 * 1024;
  return std::max<int64_t>(1, kBlockBytes / std::max<int64_t>(modes * h * w * complex_bytes, 1));
}

TileMemory predict_tile_memory(const Tiling& tiling, int k, int64_t fh, int64_t fw, const MemoryModelInputs& in) {
  const Tile& t = tiling.tile(k);
  int64_t exchange = 0;
  for (const auto& l : tiling.links())
    if (l.from == k || l.to == k) exchange += l.region.area();
  int64_t total = 0;
  for (const Tile& u : tiling.tiles()) total += static_cast<int64_t>(u.positions.size());
  return predict(t.extent.area(), static_cast<int64_t>(t.positions.size()), total, fh, fw, exchange, in);
}

TileMemory predict_undecomposed_memory(const ScanGeometry& g, const MemoryModelInputs& in) {
  return predict(g.object_h * g.object_w, g.num_positions(), g.num_positions(), g.frame_h, g.frame_w, 0, in);
}

int64_t predict_tile_bytes_sent(const Tiling& tiling, int k, const MemoryModelInputs& in) {
  int64_t pixels = 0;
  for (const auto& l : tiling.links()) {
    if (l.from == k) pixels += l.region.area();  // halo gradient to its owner
    if (l.to == k) pixels += l.region.area();    // refreshed values to the halo holder
  }
  return pixels * in.slices * 2 * in.real_bytes;
}

std::vector<TileMemory> predict_all_tile_memory(const Tiling& tiling, int64_t fh, int64_t fw,
                                                const MemoryModelInputs& in) {
  std::vector<int64_t> exchange(tiling.num_tiles(), 0);
  for (const auto& l : tiling.links()) {
    exchange[l.from] += l.region.area();
    if (l.to != l.from) exchange[l.to] += l.region.area();
  }
  int64_t total = 0;
  for (const Tile& t : tiling.tiles()) total += static_cast<int64_t>(t.positions.size());
  std::vector<TileMemory> out;
  out.reserve(tiling.num_tiles());
  for (const Tile& t : tiling.tiles())
    out.push_back(
        predict(t.extent.area(), static_cast<int64_t>(t.positions.size()), total, fh, fw, exchange[t.index], in));
  return out;
}

std::vector<int64_t> predict_all_tile_bytes_sent(const Tiling& tiling, const MemoryModelInputs& in) {
  std::vector<int64_t> pixels(tiling.num_tiles(), 0);
  for (const auto& l : tiling.links()) {
    pixels[l.from] += l.region.area();
    pixels[l.to] += l.region.area();
  }
  for (auto& p : pixels) p *= in.slices * 2 * in.real_bytes;
  return pixels;
}

std::string format_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
  return buf;
}

}  // namespace tessera
