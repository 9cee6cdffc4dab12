#include "src/reusable_buffer.h"

#include <array>

namespace tessera {
namespace {

thread_local std::array<torch::Tensor, static_cast<size_t>(BufferSlot::count)> kept;

}  // namespace

torch::Tensor reusable_buffer(BufferSlot slot, torch::IntArrayRef sizes, const torch::TensorOptions& options) {
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  torch::Tensor& k = kept[static_cast<size_t>(slot)];
  if (!k.defined() || k.scalar_type() != c10::typeMetaToScalarType(options.dtype()) ||
      k.device() != options.device() || k.numel() < numel)
    k = torch::empty({numel}, options);
  return k.narrow(0, 0, numel).view(sizes);
}

}  // namespace tessera
