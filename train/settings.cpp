#include "train/settings.h"

#include <sstream>

namespace tessera {

std::string ReconstructionSettings::describe() const {
  std::ostringstream s;
  s << "iterations = " << iterations << "\noptimizer = " << optimizer << "\nloss = " << loss
    << "\nobject_rate = " << object_rate << "\nprobe_rate = " << probe_rate << "\nrate_scale = " << rate_scale
    << "\nadam_epsilon_scale = " << (adam_epsilon_scale ? std::to_string(*adam_epsilon_scale) : "default")
    << "\nprobe_from = " << probe_from << "\nbatch_size = " << batch_size << "\nchunk_size = " << chunk_size
    << "\nseed = " << seed << "\ntiles = " << tiles << "\ntiles_y = " << tiles_y << "\ntiles_x = " << tiles_x
    << "\nprobe_modes = " << probe_modes << "\nphase_ramp_gauge = " << phase_ramp_gauge << "\ndefocus_start = " << defocus_start << "\ndefocus_candidates =" << [this] {
         std::string v;
         for (double c : defocus_candidates) v += " " + std::to_string(c);
         return v;
       }() << "\ndefocus_search_iterations = " << defocus_search_iterations << "\northogonalise_every = " << orthogonalise_every
    << "\nslices = " << slices << "\nslice_thickness_m = " << slice_thickness_m
    << "\npositions_from = " << positions_from << "\nposition_optimizer = " << position_optimizer
    << "\nposition_rate = " << position_rate << "\nposition_limit_px = " << position_limit_px
    << "\nposition_search_every = " << position_search_every
    << "\nclamp_amplitude = " << object_constraints.clamp_amplitude
    << "\nphase_only = " << object_constraints.phase_only << "\nuse_file_probe = " << use_file_probe << "\nthreads = " << threads
    << "\ndevice = " << device << "\nprecision = " << precision << "\ncheckpoint_every = " << checkpoint_every
    << "\n";
  return s.str();
}

}  // namespace tessera
