#pragma once
// What a result file must agree on with a run before --resume continues it:
// the data set, and the settings that shape the stored state (optimiser,
// precision, slices, probe modes). Checked before any stored array is used.
#include <string>

#include "train/result_file.h"
#include "train/scan_problem.h"
#include "train/settings.h"

namespace tessera {

// A short text that changes when the data set does: frame size, pattern
// count, positions and the counts of a few frames spread over the scan (read
// here: every rank gets the same answer). Stored in result files.
std::string data_fingerprint(const ScanProblem& problem);

// Throws SettingsError naming the option that differs from the stored run,
// or DataError when the result comes from another data set (fingerprint
// stored and different).
void check_resumable(const ReconstructionResult& previous, const std::string& path,
                     const ReconstructionSettings& settings, const std::string& fingerprint);

// The setting `key` in "key = value" lines (ReconstructionSettings::describe),
// or an empty string.
std::string setting_value(const std::string& lines, const std::string& key);

}  // namespace tessera
