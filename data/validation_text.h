#pragma once
// Pieces of the validation messages shared by the data readers and writers
// (CXI and 4D-STEM): numbers, plurals, shapes, and the diagnosis of a block of
// frames holding counts that cannot be counts.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "src/io/hdf5.h"

namespace tessera::validation_text {

inline std::string format_number(double v, const char* spec = "%.6g") {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, spec, v);
  return buffer;
}

inline std::string plural(int64_t n, const std::string& one, const std::string& many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

inline std::string shape_of(const torch::Tensor& t) {
  return h5::shape_string(std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
}

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

inline bool is_real_number(const h5::TypeInfo& t) {
  return t.kind == h5::Kind::integer || t.kind == h5::Kind::unsigned_integer || t.kind == h5::Kind::floating;
}

// `tessera info` checks every frame of a file up to this many bytes, and an
// even sample of blocks beyond: a file may declare terabytes (or store none
// of them), and info must answer in seconds. The reconstruction still checks
// every frame it reads.
inline constexpr int64_t kMaxInfoScanBytes = int64_t{1} << 30;

// First frames of the blocks of `step` frames that info scans out of n.
inline std::vector<int64_t> blocks_to_scan(int64_t n, int64_t step, int64_t bytes_per_frame) {
  std::vector<int64_t> starts;
  const int64_t blocks = (n + step - 1) / step;
  const int64_t allowed = std::max<int64_t>(1, kMaxInfoScanBytes / std::max<int64_t>(1, step * bytes_per_frame));
  if (blocks <= allowed) {
    for (int64_t b = 0; b < n; b += step) starts.push_back(b);
  } else {
    for (int64_t k = 0; k < allowed; ++k) starts.push_back(k * blocks / allowed * step);
  }
  return starts;
}

// The note info adds when it scanned only a sample.
inline std::string sampled_note(const std::string& key, int64_t scanned, int64_t n) {
  return key + ": the frame checks above come from " + std::to_string(scanned) + " of the " + std::to_string(n) +
         " frames (a sample spread over the file; reconstruct checks every frame it reads)";
}

// Counts per pixel above this are no measurement (a detector saturates far
// below; 2^64 - 1 or 3e38 are fill values) and overflow the loss, whose sums
// of squares over a frame must stay finite in float32.
inline constexpr float kMaxCountPerPixel = 1e15f;

// The first frame of a block that holds NaN, infinite, negative or absurdly
// large values.
struct BadCounts {
  int64_t row = 0;         // its row in the block
  int64_t bad_frames = 0;  // frames of the block with any such value
  int64_t nans = 0, infs = 0, negatives = 0, huge = 0;  // pixels of that frame
  float lowest = 0;        // its lowest finite value
  float highest = 0;       // its highest finite value

  // "NaN in 2 pixels, negative <noun> in 3 pixels (lowest -1.5)"
  std::string describe(const std::string& negative_noun) const {
    auto pixels = [](int64_t k) { return plural(k, "pixel", "pixels"); };
    std::string what;
    auto add = [&](const std::string& s) { what += (what.empty() ? "" : ", ") + s; };
    if (nans) add("NaN in " + pixels(nans));
    if (infs) add("infinite values in " + pixels(infs));
    if (negatives)
      add("negative " + negative_noun + " in " + pixels(negatives) + " (lowest " + format_number(lowest, "%.4g") + ")");
    if (huge)
      add(negative_noun + " above " + format_number(kMaxCountPerPixel, "%.0e") + " in " + pixels(huge) + " (highest " +
          format_number(highest, "%.4g") + "; no detector counts that high: a fill value or a wrong type?)");
    return what;
  }
};

// True when every value lies in [0, kMaxCountPerPixel] (NaN fails both
// comparisons, an infinity the second). One pass without temporaries: the
// tensor form, isfinite(block), allocates a full-size float copy and three
// full-size bool arrays, 1.8 GB for a 1 GB read of frames.
inline bool all_plausible_counts(const torch::Tensor& block) {
  if (block.scalar_type() != torch::kFloat || !block.is_contiguous() || !block.device().is_cpu())
    return torch::isfinite(block).all().item<bool>() && block.min().item<float>() >= 0.0f &&
           block.max().item<float>() <= kMaxCountPerPixel;
  const float* p = block.data_ptr<float>();
  return at::parallel_reduce(
      int64_t{0}, block.numel(), int64_t{1} << 16, true,
      [p](int64_t b, int64_t e, bool ok) {
        bool bad = false;
        for (int64_t i = b; i < e; ++i) bad |= !(p[i] >= 0.0f && p[i] <= kMaxCountPerPixel);
        return ok && !bad;
      },
      [](bool a, bool b) { return a && b; });
}

// block: (n, ...) float. Nothing when every value is finite and >= 0.
inline std::optional<BadCounts> find_bad_counts(const torch::Tensor& block) {
  if (block.numel() == 0) return std::nullopt;
  if (all_plausible_counts(block)) return std::nullopt;
  auto flat = block.reshape({block.size(0), -1});
  auto huge = torch::isfinite(flat) & (flat > kMaxCountPerPixel);
  auto bad_rows = (flat.isnan() | flat.isinf() | (flat < 0) | huge).any(1).nonzero().reshape({-1});
  BadCounts b;
  b.bad_frames = bad_rows.numel();
  b.row = bad_rows[0].item<int64_t>();
  auto frame = flat[b.row];
  b.nans = frame.isnan().sum().item<int64_t>();
  b.infs = frame.isinf().sum().item<int64_t>();
  b.negatives = (frame < 0).sum().item<int64_t>();
  if (b.negatives) b.lowest = frame.masked_select(torch::isfinite(frame)).min().item<float>();
  b.huge = huge[b.row].sum().item<int64_t>();
  if (b.huge) b.highest = frame.masked_select(torch::isfinite(frame)).max().item<float>();
  return b;
}

}  // namespace tessera::validation_text
