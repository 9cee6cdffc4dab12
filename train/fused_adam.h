#pragma once
// Adam with the whole update of a parameter in one pass over its elements,
// instead of torch::optim::Adam's seven tensor operations (each a pass over
// the object array with its own dispatch, and two of them allocating). On the
// demo sample those passes were a tenth of an iteration.
//
// It is a torch::optim::Adam: the same options, the same AdamParamState
// (serialised, resumed and rotated by rotate_optimizer_state exactly as
// before) and the same update, element by element:
//   m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2,
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// (g including weight decay). Dense contiguous CPU float or double
// parameters take the fused pass; any other parameter set (CUDA, amsgrad)
// goes through torch::optim::Adam::step unchanged.
#include <torch/torch.h>

namespace tessera {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace tessera
