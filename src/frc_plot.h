#pragma once
// The FRC curve as a PNG line plot (greyscale): FRC (solid) and half-bit
// threshold (dashed) against spatial frequency up to Nyquist, with the
// resolution marked. x ticks are labelled with the period 1/q.
#include <string>

#include "src/frc.h"

namespace tessera {

void write_frc_png(const std::string& path, const FrcCurve& curve);

}  // namespace tessera
