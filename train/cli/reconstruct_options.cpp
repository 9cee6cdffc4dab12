#include "train/cli/reconstruct_options.h"

#include "models/losses.h"
#include "models/priors/native.h"
#include "train/cli/load_options.h"
#include "train/optimizers.h"
#include "train/probe_starts.h"

namespace tessera::cli {

namespace {

std::string listed(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? (i + 1 == names.size() ? " or " : ", ") : "") + names[i];
  return s;
}

// Positions step in pixels: optimisers whose step is in parameter units.
std::vector<std::string> position_optimizers() {
  std::vector<std::string> names;
  for (const auto& name : optimizer_names())
    if (optimizer_by_name(name).scaling == StepScaling::ParameterUnits) names.push_back(name);
  return names;
}

}  // namespace

OptionTable reconstruct_option_table() {
  using K = OptionKind;
  OptionTable t = {
      {"data", K::path, "", "CXI or 4D-STEM data file", "", Bound::none, {}, true, true},
      {"output", K::path, "result.h5", "result file (HDF5); previews and metrics CSV are written beside it", "o"},
      {"config", K::path, "",
       "run file (TOML, name = value; the keys are these options' names) or a tessera result, whose stored "
       "settings are then rerun; options given here override it",
       "", Bound::none, {}, false},
      {"iterations", K::whole, "100", "iterations (passes over all patterns)", "i", Bound::at_least_zero},
      {"optimizer", K::text, "adam", "optimiser of object and probe: " + listed(optimizer_names())},
      {"loss", K::text, "amplitude", "data loss: " + listed(loss_names())},
      {"object-rate", K::number, "0", "object learning rate (default: derived from the data)", "", Bound::positive},
      {"probe-rate", K::number, "0", "probe learning rate (default: derived from the data)", "", Bound::positive},
      {"rate-scale", K::number, "1", "multiplies the derived learning rates", "", Bound::positive},
      {"adam-epsilon-scale", K::number, "",
       "with Adam: its epsilon as this times the RMS of the parameter's current gradient, which keeps weakly "
       "measured pixels from stepping as far as well measured ones and so from fitting the noise (README, Low "
       "dose); 0: Adam's own 1e-8 (default: 3 with Adam)",
       "", Bound::at_least_zero},
      {"probe-from", K::whole, "0", "iteration from which the probe is refined (-1: never)", "",
       Bound::at_least_minus_one},
      {"batch-size", K::whole, "0", "patterns per optimiser step (default: 1/8 of the scan)", "", Bound::positive},
      {"chunk-size", K::whole, "64", "patterns per forward/backward pass (memory bound)", "", Bound::positive},
      {"seed", K::whole, "1", "seed of the mini-batch order", "", Bound::at_least_zero, {}, true, false, true},
      {"tiles", K::whole, "1", "number of object tiles (default: one per rank)", "", Bound::positive},
      {"tile-grid", K::text, "", "explicit tile grid, e.g. 2x3 (rows x columns)"},
      {"modes", K::whole, "1", "incoherent probe modes"},
      {"no-file-probe", K::flag, "", "ignore the probe guess stored in the file; estimate it from the data"},
      {"no-defocus-search", K::flag, "", "same as --defocus-start focused"},
      {"defocus-start", K::text, "parallax", "how the probe starts without a stored one: " + probe_start_help(), "",
       Bound::none, probe_start_names()},
      {"defocus-candidates", K::numbers, "",
       "defocus values the search tries, radians of phase at the aperture edge (comma-separated; one value starts "
       "from that defocus; default -16,-8,-4,0,4,8,16)"},
      {"defocus-search-iterations", K::whole, "2", "iterations run from each defocus candidate", "", Bound::at_least_zero},
      {"phase-ramp-gauge", K::text, "auto",
       "after each iteration fix the phase ramp the data cannot, by centring the probe's far field on the zero "
       "order (beam) or by leaving the object no mean ramp over the scan's interior (object); auto = beam when the "
       "zero order is known without the specimen (the file's beam centre or --zero-order), else object",
       "", Bound::none, {"auto", "beam", "object", "off"}},
      {"no-probe-centring", K::flag, "", "same as --phase-ramp-gauge off"},
      {"orthogonalise-every", K::whole, "1", "re-orthogonalise the probe modes every N iterations (0: never)", "",
       Bound::at_least_zero},
      {"slices", K::whole, "1", "object slices (multislice)"},
      {"slice-thickness", K::number, "0", "distance between object slices in metres (multislice)"},
      {"positions-from", K::whole, "-1", "iteration from which scan positions are refined (-1: never)", "",
       Bound::at_least_minus_one},
      {"position-optimizer", K::text, "adam", "optimiser of the positions: " + listed(position_optimizers())},
      {"position-rate", K::number, "0", "position learning rate in pixels per step (default 0.02)"},
      {"position-limit", K::number, "0", "largest correction of a position in pixels (default: a quarter window)"},
      {"clamp-amplitude", K::flag, "", "keep the object amplitude <= 1"},
      {"phase-only", K::flag, "", "pure phase object (amplitude fixed to 1)"},
      {"threads", K::whole, "0", "CPU threads per process (default: OMP_NUM_THREADS, else all cores)", "",
       Bound::positive},
      {"device", K::text, "",
       "cpu or cuda[:N] (default: GPU LOCAL_RANK when this build has CUDA and a GPU is visible, else cpu)"},
      {"precision", K::text, "float", "arithmetic of the reconstruction", "", Bound::none, {"float", "double"}},
      {"checkpoint-every", K::whole, "10", "write the result every N iterations (0: only at the end)", "",
       Bound::at_least_zero},
      {"resume", K::path, "", "continue from this result file", "", Bound::none, {}, false},
      {"overwrite", K::flag, "", "replace an existing --output file even if it is not a tessera result", "",
       Bound::none, {}, false},
      {"timeout", K::number, "60", "seconds to wait for a peer rank before failing", "", Bound::positive},
      {"prior", K::texts, "",
       "built-in regulariser, repeatable: " + listed(prior_names()) + " (tv: total variation of phase and "
       "amplitude; smooth: quadratic gradient); needs --prior-weight"},
      {"prior-weight", K::number, "0",
       "weight of the regularisers (--prior, --regulariser): the loss is the mean data loss per pattern + weight * "
       "penalty, the penalty a sum over object pixels, so the weight grows with the photon count "
       "(tests/test_priors.cpp: 1e-2 for tv at 1e3 photons per frame, Poisson loss)"},
      {"regulariser", K::path, "",
       "TorchScript regulariser R(x) -> scalar or (L, H, W) map, x the object as (L, 2, H, W) real/imaginary "
       "channels (see models/priors/torchscript.h); weighted by --prior-weight"},
      {"denoiser", K::path, "",
       "TorchScript plug-and-play denoiser D(x) -> x, x the object as (L, 2, H, W) real/imaginary channels, "
       "applied every --denoise-every iterations (example: models/denoiser.pt, trained by "
       "scripts/train_denoiser.py)"},
      {"denoise-every", K::whole, "1", "apply the denoiser every N iterations", "", Bound::positive},
      {"denoise-blend", K::number, "1", "object <- (1 - B) object + B denoised, B in (0, 1]"},
      {"frc", K::flag, "",
       "truth-free resolution: first reconstruct two interleaved halves of the scan (checkerboard of a raster, "
       "else alternate positions) with the same settings into <stem>_half1.h5 and _half2.h5, then the full scan; "
       "print the half-bit FRC resolution, store it in the result and plot <stem>_frc.png (about twice the time)"},
      {"no-previews", K::flag, "", "do not write PNG previews"},
      {"quiet", K::flag, "", "no progress lines", "q"},
      {"help", K::flag, "", "this help", "h", Bound::none, {}, false},
  };
  for (auto& spec : load_option_table()) t.push_back(std::move(spec));
  return t;
}

cxxopts::Options reconstruct_command_options(const OptionTable& table) {
  cxxopts::Options o("tessera reconstruct",
                     "Reconstruct object and probe from a CXI data file. Under torchrun each rank takes one or "
                     "more tiles of the object (image gradient decomposition).");
  add_options(o, "", table);
  o.parse_positional({"data"});
  o.positional_help("DATA");
  return o;
}

}  // namespace tessera::cli
