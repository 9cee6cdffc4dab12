#include "src/ops/loss_measurement.h"

#include "src/error.h"

namespace tessera::ops {

LossMeasurement check_loss_measurement(const char* op, int64_t B, int64_t h, int64_t w, torch::ScalarType real_type,
                                       const torch::Device& device, const torch::Tensor& measured,
                                       const torch::Tensor& valid, const torch::Tensor& rows) {
  LossMeasurement m;
  if (rows.defined()) {
    TESSERA_REQUIRE(Error, rows.dim() == 1 && rows.size(0) == B && rows.scalar_type() == torch::kInt64, op,
                    ": pattern rows must be ", B, " int64 indices, got ", rows.sizes(), " ", rows.scalar_type());
    m.rows = rows.to(device).contiguous();
  }
  const int64_t N = rows.defined() ? measured.size(0) : B;
  TESSERA_REQUIRE(Error, measured.dim() == 3 && measured.size(0) == N && measured.size(1) == h && measured.size(2) == w,
                  op, ": measured intensities have shape ", measured.sizes(), ", expected (", N, ", ", h, ", ", w,
                  ")");
  TESSERA_REQUIRE(Error, measured.scalar_type() == real_type && measured.device() == device, op,
                  ": measured intensities are ", measured.scalar_type(), " on ", measured.device(), " but the model is ",
                  real_type, " on ", device, "; both must have the same precision and device");
  if (m.rows.defined() && B > 0) {
    // A wrong row would read out of bounds.
    const auto [lowest, highest] = torch::aminmax(m.rows);
    const int64_t lo = lowest.item<int64_t>(), hi = highest.item<int64_t>();
    TESSERA_REQUIRE(Error, lo >= 0 && hi < N, op, ": pattern row ", lo < 0 ? lo : hi, " is outside the ", N,
                    " measured frames");
  }
  m.measured = measured.contiguous();
  if (valid.defined()) {
    TESSERA_REQUIRE(Error, valid.scalar_type() == torch::kBool, op, ": the valid-pixel mask must be bool, got ",
                    valid.scalar_type());
    const bool per_frame = valid.dim() == 3 && valid.size(0) == N && valid.size(1) == h && valid.size(2) == w;
    TESSERA_REQUIRE(Error, per_frame || (valid.dim() == 2 && valid.size(0) == h && valid.size(1) == w), op,
                    ": the valid-pixel mask has shape ", valid.sizes(), ", expected (", h, ", ", w, ") or (", N, ", ",
                    h, ", ", w, ")");
    // In the working precision, not bool: masking is then a vector compare-and-select.
    m.keep = valid.to(device, real_type).contiguous();
    m.keep_stride = per_frame ? h * w : 0;
  }
  return m;
}

}  // namespace tessera::ops
