#pragma once
// Fourier ring correlation of two reconstructions of the same specimen
// (result files), over the part of the object both scans lit well.
#include <string>

#include "src/frc.h"
#include "train/result_file.h"

namespace tessera {

// Compares slice 0 of both objects. The region is the largest rectangle lit
// at least half as well as the scan's interior in both (their own probes and
// positions); both must have the same pixel size. names: for messages.
FrcCurve frc_between_results(const ReconstructionResult& a, const ReconstructionResult& b, const std::string& name_a,
                             const std::string& name_b);

// The lines a microscopist reads: resolution (or the sampling limit), the
// region and the alignment that was removed.
std::string describe_frc(const FrcCurve& curve);

}  // namespace tessera
