#pragma once
// Writing CXI 1.6 ptychography files that CxiFile, h5py and PtyPy's generic
// HDF5 loader read without surprises (see /work/shared/reference/cxi.md).
#include <optional>
#include <string>

#include <torch/torch.h>

#include "data/scan_data.h"

namespace tessera {

// What a CXI file holds.
struct CxiContent {
  // Wavelength or energy (at least one; both are written, the other computed),
  // distance and detector pixel size are required. frame_h / frame_w may be 0
  // (taken from frames) or must match them.
  ExperimentGeometry geometry;
  torch::Tensor frames;                      // (N, h, w) real, stored as float32; as measured, zero order near the centre
  torch::Tensor translation_m;               // (N, 3) x y z metres (or (N, 2) x y: z = 0 is written)
  std::optional<torch::Tensor> mask;         // (h, w) integer, non-zero = excluded pixel (stored as uint32)
  std::optional<torch::Tensor> probe_guess;  // (h, w) or (M, h, w) complex -> source_1/illumination (complex64)
  std::optional<GroundTruth> truth;          // -> /entry_1/tessera_truth/{object, probe, positions_px}
};

struct CxiWriteOptions {
  int gzip_level = 0;  // 1..9 compresses the frames (chunked one frame per chunk either way)
};

// Writes content to path atomically (temporary file in the same directory,
// then rename): readers never see a half-written file, and on failure an
// existing file at path is left untouched. Writes
//   /cxi_version = 160
//   /entry_1/instrument_1/detector_1/data (N, h, w) float32, attribute axes = "translation:y:x"
//   /entry_1/instrument_1/detector_1/{distance, x_pixel_size, y_pixel_size} (m)
//   /entry_1/instrument_1/detector_1/mask (h, w) uint32 (when given)
//   /entry_1/instrument_1/detector_1/beam_center_{y,x} in pixels, units = "pixel" (when geometry.zero_order_px is set)
//   /entry_1/instrument_1/source_1/{energy (J), wavelength (m)}
//   /entry_1/instrument_1/source_1/illumination complex64 (when given; (h, w) for one mode)
//   /entry_1/sample_1/geometry_1/translation (N, 3) float64
//   /entry_1/data_1/{data, translation}: soft links to the two above
//   /entry_1/tessera_truth/{object (L, H, W), probe (M, h, w) complex64, positions_px (N, 2) float64}
// The content is validated first (shapes, positive finite geometry, finite
// non-negative frames, finite positions; DataError naming the field), and the
// written file is reopened with CxiFile before the rename, so write_cxi never
// produces a file that CxiFile rejects.
void write_cxi(const std::string& path, const CxiContent& content, const CxiWriteOptions& options = {});

}  // namespace tessera
