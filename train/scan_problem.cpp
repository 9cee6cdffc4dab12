#include "train/scan_problem.h"

#include "data/cxi_file.h"
#include "src/error.h"

namespace tessera {

ScanProblem ScanProblem::from_cxi(const std::string& path) {
  auto file = std::make_shared<CxiFile>(path);
  ScanProblem p;
  p.source = path;
  p.experiment = file->geometry();
  const auto& g = p.experiment;
  p.scan = ScanGeometry::from_metres(file->positions_m(), g.pixel_y_m(), g.pixel_x_m(), g.frame_h, g.frame_w);
  p.valid_mask = file->valid_mask();
  p.probe_guess = file->probe_guess();
  p.truth = file->ground_truth();
  p.read_frames = [file](const std::vector<int64_t>& idx) { return file->read_frames(idx); };
  return p;
}

ScanProblem ScanProblem::from_content(CxiContent c, std::string source) {
  ScanProblem p;
  p.source = std::move(source);
  p.experiment = c.geometry;
  const auto& g = p.experiment;
  auto yx = torch::stack({c.translation_m.select(1, 1), c.translation_m.select(1, 0)}, 1);
  p.scan = ScanGeometry::from_metres(yx, g.pixel_y_m(), g.pixel_x_m(), g.frame_h, g.frame_w);
  p.valid_mask = c.mask ? (*c.mask == 0) : torch::ones({g.frame_h, g.frame_w}, torch::kBool);
  if (c.probe_guess) p.probe_guess = c.probe_guess->dim() == 2 ? c.probe_guess->unsqueeze(0) : *c.probe_guess;
  p.truth = c.truth;
  auto frames = c.frames;
  p.read_frames = [frames](const std::vector<int64_t>& idx) {
    return frames.index_select(0, torch::tensor(idx, torch::kInt64)).to(torch::kFloat32);
  };
  return p;
}

}  // namespace tessera
