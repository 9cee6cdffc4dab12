#pragma once
// The zero order: where the undiffracted beam falls on the detector.
//
// Frames are stored as measured, and real detectors are not centred on the
// beam: the zero order sits anywhere, usually between pixels. The forward
// model's far field has its zero frequency at pixel [0, 0] (FFT order). A
// circular shift of the measured frames by whole pixels is exactly a
// whole-pixel tilt of the probe in the model (|F(P e^{2 pi i d.r / n} O)|^2 is
// |F(P O)|^2 shifted by d), so the shift to FFT order takes the pixel nearest
// to the zero order to [0, 0], and the sub-pixel rest, under half a pixel, is
// carried by the probe as a tilt: exact, never rounded away.
#include <cstdint>
#include <utility>

#include <torch/torch.h>

namespace tessera {

using PixelPoint = std::pair<double, double>;  // [y, x] in detector pixels

// The zero order of (h, w) frames when nothing says otherwise: pixel [h/2, w/2].
PixelPoint centred_zero_order(int64_t h, int64_t w);

// Frames (..., h, w) as measured to FFT order: the pixel nearest to
// `zero_order` goes to [0, 0]. For [h/2, w/2] this is ifftshift.
torch::Tensor to_fft_order(const torch::Tensor& frames, const PixelPoint& zero_order);
// The same written into `out` (same shape; any dtype and device copy_ takes),
// with no temporary: frames are loaded piece by piece into one array.
void to_fft_order_into(const torch::Tensor& frames, const PixelPoint& zero_order, torch::Tensor out);

// The sub-pixel rest of the zero order that the probe carries as a tilt:
// zero_order minus its nearest pixel, each in (-0.5, 0.5].
PixelPoint zero_order_rest(const PixelPoint& zero_order);

// The direct beam's region of a mean pattern (h, w), in any pixel order
// (circular): the pixels above a tenth of its peak (the 99.9th percentile),
// less those whose 3 x 3 neighbourhood is not all above it (an isolated hot
// pixel is no beam), widened by `margin` pixels. 0 or 1, float64.
torch::Tensor bright_region(const torch::Tensor& mean_pattern, int64_t margin = 3);

// The circular centroid [y, x] (pixels, in [0, h) and [0, w)) of an (h, w)
// intensity within `region`: angle of sum region I exp(2 pi i y / h) etc.
// Linear in the intensity and exactly moved by a tilt of the beam, with no
// threshold to step over; the probe's far field is centred by the same
// functional (the phase-ramp gauge), so the two agree by construction.
PixelPoint circular_centroid(const torch::Tensor& intensity, const torch::Tensor& region);

// The zero order estimated from the mean pattern (h, w) as measured (valid:
// (h, w) bool, true = pixel used): the circular centroid of its bright
// region. It includes the specimen's mean deflection, which no measurement
// with the specimen in can separate from the beam's position.
PixelPoint estimate_zero_order(const torch::Tensor& mean_pattern, const torch::Tensor& valid);

// The probe's far-field centre relative to the zero frequency, in pixels:
// the circular centroid of |F P|^2 over all modes (models/phase_ramp.h), free
// of wrap-around.
PixelPoint far_field_centre(const torch::Tensor& probe);

// The probe (M, h, w) tilted so that its far field moves by `shift` pixels:
// P(r) exp(2 pi i (shift_y y / h + shift_x x / w)), any real shift.
torch::Tensor tilt_probe(const torch::Tensor& probe, const PixelPoint& shift);

}  // namespace tessera
