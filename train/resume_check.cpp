#include "train/resume_check.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "src/error.h"

namespace tessera {

namespace {

// FNV-1a: a fingerprint, not a defence against forgery.
void mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
}

void mix_tensor(uint64_t& h, const torch::Tensor& t) {
  const auto c = t.contiguous().cpu();
  mix(h, c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
}

}  // namespace

std::string data_fingerprint(const ScanProblem& problem) {
  const auto& scan = problem.scan;
  uint64_t h = 1469598103934665603ull;
  const int64_t n = scan.num_positions();
  for (int64_t v : {scan.frame_h, scan.frame_w, n}) mix(h, &v, sizeof v);
  mix_tensor(h, scan.positions_px.to(torch::kFloat64));
  const int64_t samples = std::min<int64_t>(n, 8);
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < samples; ++i) idx.push_back(i * n / samples);
  if (!idx.empty() && problem.read_frames) mix_tensor(h, problem.read_frames(idx).to(torch::kFloat32));
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

std::string setting_value(const std::string& lines, const std::string& key) {
  std::istringstream in(lines);
  std::string line;
  const std::string prefix = key + " = ";
  while (std::getline(in, line))
    if (line.compare(0, prefix.size(), prefix) == 0) return line.substr(prefix.size());
  return {};
}

void check_resumable(const ReconstructionResult& previous, const std::string& path,
                     const ReconstructionSettings& settings, const std::string& fingerprint) {
  TESSERA_REQUIRE(DataError, previous.data_fingerprint.empty() || previous.data_fingerprint == fingerprint, path,
                  ": this result was computed from another data set (its frames or positions differ from ",
                  "this run's); it cannot be resumed on this data");
  // The settings that shape the stored object, probe and optimiser state.
  static const std::pair<const char*, const char*> shaping[] = {
      {"optimizer", "--optimizer"}, {"precision", "--precision"}, {"slices", "--slices"}, {"probe_modes", "--modes"}};
  const std::string now = settings.describe();
  for (const auto& [key, option] : shaping) {
    const std::string before = setting_value(previous.settings, key), here = setting_value(now, key);
    TESSERA_REQUIRE(SettingsError, before.empty() || before == here, path, ": this result was computed with ",
                    option, " ", before, " but this run has ", option, " ", here, "; resume with ", option, " ",
                    before);
  }
}

}  // namespace tessera
