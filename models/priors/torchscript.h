#pragma once
// Learned priors from TorchScript files (torch.jit.script / torch.jit.trace,
// then torch.jit.save), loaded with torch::jit::load.
//
// Tensor convention: what the scripted module receives
// ------------------------------------------------------
//   forward(x) with x: (L, 2, H, W) real tensor, channel 0 = real part and
//   channel 1 = imaginary part of the complex object, one batch entry per
//   object slice (L = 1 unless multislice). H x W is the whole object, or with
//   tiles the tile's working array (owned region plus halo), so the module must
//   accept any H, W (a fully convolutional network does).
//   dtype: the run's precision, float32 by default (float64 with
//   --precision double); the module's parameters and buffers are cast to it
//   (and to the run's device) before the first call, so ship float32 weights.
//   The object is passed as it is: no normalisation. A reconstruction's object
//   is only defined up to a global phase factor (and, with a refined probe, a
//   global amplitude scale), so a denoiser should be (nearly) equivariant to
//   x -> a R(theta) x: scripts/train_denoiser.py gets the scale exactly from a
//   bias-free ReLU network and the rotation by training on random global phases.
//   Real and imaginary parts (rather than phase and amplitude) are used
//   because they have no phase wrapping, the reconstruction noise is additive
//   in them, and a global phase is a linear map of them.
//
//   Denoiser:    returns (L, 2, H, W), same dtype: the denoised object.
//   Regulariser: returns either a per-pixel penalty map (L, H, W), same dtype,
//                whose entries over the tile's owned pixels are summed (exact
//                with tiles when each entry depends only on a neighbourhood
//                that the halo holds), or a 0-dim scalar R(x). A scalar is
//                evaluated on the owned region alone: exact for one tile, but
//                with tiles the terms that straddle a tile border are lost.
//                Its gradient comes from autograd through the scripted code.
//
// Errors: a file that does not exist or cannot be read is a SettingsError; a
// file that is not TorchScript, has no forward method, fails on a test input,
// or returns the wrong shape, dtype or non-finite values is a DataError naming
// the file and what was expected. The module is checked when it is loaded,
// with a (1, 2, 32, 32) float32 test input, and every output is checked again.
#include <memory>
#include <string>

#include "models/prior.h"

namespace tessera {

class TorchScriptModel;  // the loaded module (models/priors/torchscript.cpp)

// A learned regulariser R(object), added to the loss with a weight.
class TorchScriptRegulariser : public Prior {
 public:
  explicit TorchScriptRegulariser(const std::string& path);
  ~TorchScriptRegulariser() override;
  std::string name() const override;
  bool is_regulariser() const override { return true; }
  torch::Tensor penalty(const torch::Tensor& object, const Rect& owned) override;

 private:
  std::unique_ptr<TorchScriptModel> model_;
};

// A plug-and-play denoiser: object <- D(object) every few iterations.
class TorchScriptDenoiser : public Prior {
 public:
  explicit TorchScriptDenoiser(const std::string& path);
  ~TorchScriptDenoiser() override;
  std::string name() const override;
  bool is_denoiser() const override { return true; }
  torch::Tensor denoise(const torch::Tensor& object) override;

 private:
  std::unique_ptr<TorchScriptModel> model_;
};

// The convention's conversions: (L, H, W) complex <-> (L, 2, H, W) real.
torch::Tensor complex_to_channels(const torch::Tensor& object);
torch::Tensor channels_to_complex(const torch::Tensor& channels);

}  // namespace tessera
