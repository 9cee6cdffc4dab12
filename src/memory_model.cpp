#include "src/memory_model.h"

#include <algorithm>
#include <cstdio>

namespace tessera {
namespace {

TileMemory predict(int64_t extent_pixels, int64_t patterns, int64_t frame_h, int64_t frame_w,
                   int64_t exchange_pixels, const MemoryModelInputs& in) {
  const int64_t c = 2 * in.real_bytes;  // one complex element
  const int64_t copies = 2 + in.optimizer_state_copies;  // value + gradient + state
  const int64_t frame = frame_h * frame_w;
  TileMemory m;
  m.object = in.slices * extent_pixels * c * copies;
  m.probe = in.probe_modes * frame * c * copies;
  m.patterns = patterns * frame * in.real_bytes;
  // Per pattern in a chunk, autograd keeps: the window patches (L slices),
  // exit and far-field waves per mode (and per slice for multislice), the
  // predicted and residual intensities; backward holds about as much again
  // at its peak.
  const int64_t chunk = std::min<int64_t>(in.chunk_size, std::max<int64_t>(patterns, 1));
  const int64_t per_pattern = frame * (c * (in.slices + 2 * in.probe_modes * in.slices) + 3 * in.real_bytes);
  m.intermediates = 2 * chunk * per_pattern;
  m.exchange = 2 * in.slices * exchange_pixels * c;
  return m;
}

}  // namespace

TileMemory predict_tile_memory(const Tiling& tiling, int k, int64_t fh, int64_t fw, const MemoryModelInputs& in) {
  const Tile& t = tiling.tile(k);
  int64_t exchange = 0;
  for (const auto& l : tiling.links())
    if (l.from == k || l.to == k) exchange += l.region.area();
  return predict(t.extent.area(), static_cast<int64_t>(t.positions.size()), fh, fw, exchange, in);
}

TileMemory predict_undecomposed_memory(const ScanGeometry& g, const MemoryModelInputs& in) {
  return predict(g.object_h * g.object_w, g.num_positions(), g.frame_h, g.frame_w, 0, in);
}

int64_t predict_tile_bytes_sent(const Tiling& tiling, int k, const MemoryModelInputs& in) {
  int64_t pixels = 0;
  for (const auto& l : tiling.links()) {
    if (l.from == k) pixels += l.region.area();  // halo gradient to its owner
    if (l.to == k) pixels += l.region.area();    // refreshed values to the halo holder
  }
  return pixels * in.slices * 2 * in.real_bytes;
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
