#pragma once
// How the probe starts when the file gives none (--defocus-start): a
// registry of named strategies, like losses and optimisers
// (src/registry.h). The engine first forms the focused probe from the mean
// pattern; a strategy then chooses the defocus to start from, through what
// the engine offers in ProbeStartContext. A program adds its own with
// register_probe_start; `tessera reconstruct --help` lists them.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace tessera {

struct ProbeStartContext {
  torch::Tensor focused_probe;         // (modes, h, w), zero far-field phase, from the mean pattern
  std::pair<double, double> centre;    // the zero order relative to the zero frequency, pixels
  double aperture_radius_px = 0;       // the radius a defocus's edge phase refers to (models/probe_init.h)
  // Starts from the defocus the shadow parallax shows (models/defocus_estimate.h);
  // false, with the probe unchanged, when the data show none.
  std::function<bool()> parallax_defocus;
  // Tries the settings' --defocus-candidates by a few iterations each and
  // starts from the lowest loss; skipped where the settings rule it out
  // (no candidates, 0 iterations, a stored probe, a line-search optimiser).
  std::function<void()> search_defocus;
  // Starts the reconstruction over from this probe (same shape as focused_probe).
  std::function<void(const torch::Tensor&)> restart_from;
};

struct ProbeStartInfo {
  std::string name;
  std::string description;  // one line for the help
  std::function<void(const ProbeStartContext&)> start;
};

void register_probe_start(ProbeStartInfo info);
const ProbeStartInfo& probe_start_by_name(const std::string& name);  // SettingsError listing known names
std::vector<std::string> probe_start_names();
// "name: description; ..." for the help.
std::string probe_start_help();

}  // namespace tessera
