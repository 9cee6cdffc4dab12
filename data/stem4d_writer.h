#pragma once
// Writing the tessera 4D-STEM layout (documented in data/stem4d_file.h).
#include <optional>
#include <string>

#include <torch/torch.h>

#include "data/scan_data.h"
#include "data/stem4d_file.h"

namespace tessera {

struct Stem4dContent {
  torch::Tensor data;  // (Ry, Rx, Qy, Qx) real counts, stored as float32; as measured, zero order near the centre
  // energy_kev, step_*_angstrom (unless positions_angstrom is given) and dk_*
  // (Å⁻¹ per pixel) are required; the wavelength is derived (a value given
  // here is ignored). Optional probe optics, scan rotation and zero order.
  Stem4dCalibration calibration;
  std::optional<torch::Tensor> positions_angstrom;  // (Ry*Rx, 2) measured [y, x] Å, scan axes
  bool store_mrad = false;  // write the calibration as mrad per pixel instead of Å⁻¹ per pixel
  std::optional<torch::Tensor> bad_pixels;  // (Qy, Qx) integer, non-zero = bad (stored as uint8)
  std::optional<GroundTruth> truth;         // -> /stem4d/tessera_truth/{object, probe, positions_px}
};

struct Stem4dWriteOptions {
  int gzip_level = 0;  // 1..9 compresses (chunks of one pattern either way)
};

// Writes content to path atomically (temporary file in the same directory,
// then rename; on failure an existing file at path is left untouched). The
// content is validated first (DataError naming the field), and the written
// file is reopened with Stem4dFile before the rename, so write_stem4d never
// produces a file that the reader rejects.
void write_stem4d(const std::string& path, const Stem4dContent& content, const Stem4dWriteOptions& options = {});

}  // namespace tessera
