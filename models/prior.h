#pragma once
// Priors on the object: regularisers (a penalty added to the loss, its
// gradient from autograd) and plug-and-play denoisers (object <- D(object)
// every few iterations). Implementations live in models/priors/.
//
// With tiles, a prior sees the tile's whole working array (owned region plus
// halo). A penalty made of local terms is exact when each tile sums only the
// terms of the pixels it owns (`owned`): the gradient that lands in the halo is
// then added to its owner by the overlap reduction, like the data gradient.
#include <memory>
#include <string>

#include <torch/torch.h>

#include "src/geometry.h"

namespace tessera {

class Prior {
 public:
  virtual ~Prior() = default;
  virtual std::string name() const = 0;
  virtual bool is_regulariser() const { return false; }
  virtual bool is_denoiser() const { return false; }
  // object (L, H, W) complex, differentiable; owned: the pixels whose terms
  // this tile sums, in the array's coordinates. Returns a scalar.
  virtual torch::Tensor penalty(const torch::Tensor& object, const Rect& owned) {
    throw std::logic_error(name() + " is not a regulariser");
  }
  // object (L, H, W) complex; returns the denoised array, same shape and dtype.
  virtual torch::Tensor denoise(const torch::Tensor& object) {
    throw std::logic_error(name() + " is not a denoiser");
  }
};

struct PriorSettings {
  double weight = 0;       // regulariser weight (penalty per pattern, like the data loss)
  int every = 1;           // denoiser: apply every N iterations
  double blend = 1;        // denoiser: object <- (1 - blend) object + blend D(object)
};

}  // namespace tessera
