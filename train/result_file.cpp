#include "train/result_file.h"

#include <cmath>
#include <cstring>

#include <torch/version.h>

#include "src/error.h"
#include "src/fft/batched_fft.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"

namespace tessera {

namespace {

void write_result_file(const std::string& path, const ReconstructionResult& r) {
  write_atomically(path, [&](const std::string& tmp) {
    auto f = h5::File::create(tmp);
    f.write_attribute("program", std::string("tessera"));
    f.write_attribute("version", std::string(TESSERA_VERSION));
    // What computed it: results differ by float rounding between LibTorch
    // versions and FFT libraries.
    f.write_attribute("libtorch", std::string(TORCH_VERSION));
    f.write_attribute("cpu_fft", fft_library_description(active_fft_library()));
    f.write_attribute("data_file", r.data_file);
    f.write_attribute("data_fingerprint", r.data_fingerprint);
    auto g = f.require_group("/reconstruction");
    g.create_dataset("object", r.object.to(torch::kComplexFloat).cpu());
    g.create_dataset("probe", r.probe.to(torch::kComplexFloat).cpu());
    g.create_dataset("positions_px", r.positions_px.to(torch::kFloat64).cpu());
    g.create_dataset("pixel_size_m", r.pixel_size_m.to(torch::kFloat64).cpu());
    g.create_dataset("loss", torch::tensor(r.loss, torch::kFloat64));
    g.create_dataset("seconds", torch::tensor(r.seconds, torch::kFloat64));
    g.write_scalar("iteration", static_cast<int64_t>(r.iteration));
    g.write_string("settings", r.settings);
    if (!r.run_file.empty()) g.write_string("run_file", r.run_file);
    for (const auto& [key, bytes] : r.optimizer_states) {
      auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
      std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
      g.create_dataset("optimizer_state/" + key, t);
    }
    if (r.frc) {
      const FrcCurve& c = *r.frc;
      auto fg = g.require_group("frc");
      fg.create_dataset("frequency_per_m", torch::tensor(c.frequency_per_m, torch::kFloat64));
      fg.create_dataset("frc", torch::tensor(c.frc, torch::kFloat64));
      fg.create_dataset("threshold", torch::tensor(c.threshold, torch::kFloat64));
      fg.create_dataset("ring_pixels", torch::tensor(c.ring_pixels, torch::kInt64));
      fg.write_scalar("resolution_m", c.resolution_m);
      fg.write_scalar("nyquist_period_m", c.nyquist_period_m);
      fg.write_scalar("sampling_limited", static_cast<int64_t>(c.sampling_limited));
      fg.create_dataset("region", torch::tensor({c.region.y0, c.region.x0, c.region.h, c.region.w}, torch::kInt64));
      const auto& a = c.alignment;
      fg.create_dataset("alignment", torch::tensor({a.shift_y, a.shift_x, a.phase_offset, a.ramp_y, a.ramp_x},
                                                   torch::kFloat64));
      fg.write_attribute("halves", r.frc_halves);
    }
    f.create_soft_link("/entry_1/image_1/data", "/reconstruction/object");
  });
}

}  // namespace

void write_result(const std::string& path, const ReconstructionResult& r) {
  try {
    write_result_file(path, r);
  } catch (const Error& e) {
    // The temporary file is named in e; the user needs the result's name and
    // to know that the previous checkpoint is intact.
    throw Error(path + ": the result was not written (" + e.what() + "); an earlier " + path +
                ", if any, is unchanged");
  }
}

bool is_tessera_result(const std::string& path) {
  try {
    auto f = h5::File::open(path);
    return f.has_attribute("program") && f.read_string_attribute("program") == "tessera" &&
           f.exists("/reconstruction");
  } catch (const std::exception&) {
    return false;
  }
}

std::string read_stored_run_file(const std::string& path) {
  auto f = h5::File::open(path);
  return f.exists("/reconstruction/run_file") ? f.group("/reconstruction").dataset("run_file").read_string()
                                              : std::string();
}

ReconstructionResult read_result(const std::string& path) {
  auto f = h5::File::open(path);
  TESSERA_REQUIRE(DataError, f.exists("/reconstruction/object"), path,
                  ": /reconstruction/object is missing: this is not a tessera result file");
  auto g = f.group("/reconstruction");
  ReconstructionResult r;
  r.object = g.dataset("object").read(torch::kComplexFloat);
  r.probe = g.dataset("probe").read(torch::kComplexFloat);
  r.positions_px = g.dataset("positions_px").read(torch::kFloat64);
  r.pixel_size_m = g.dataset("pixel_size_m").read(torch::kFloat64);
  auto to_vec = [](const torch::Tensor& t) {
    auto c = t.contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  r.loss = to_vec(g.dataset("loss").read(torch::kFloat64));
  r.seconds = to_vec(g.dataset("seconds").read(torch::kFloat64));
  // The loop runs from the stored count: a damaged one must not become a
  // 2^31-iteration run or undefined behaviour in the conversion.
  const double iteration = g.dataset("iteration").read_scalar();
  TESSERA_REQUIRE(DataError,
                  std::isfinite(iteration) && iteration >= 0 && iteration == std::floor(iteration) &&
                      iteration <= static_cast<double>(r.loss.size()),
                  path, ": /reconstruction/iteration is ", iteration, " but the file holds the loss of ",
                  r.loss.size(), " iterations; the file is damaged");
  r.iteration = static_cast<int>(iteration);
  r.settings = g.dataset("settings").read_string();
  if (g.exists("run_file")) r.run_file = g.dataset("run_file").read_string();
  if (f.has_attribute("data_file")) r.data_file = f.read_string_attribute("data_file");
  if (g.exists("frc")) {
    auto fg = g.group("frc");
    FrcCurve c;
    c.frequency_per_m = to_vec(fg.dataset("frequency_per_m").read(torch::kFloat64));
    c.frc = to_vec(fg.dataset("frc").read(torch::kFloat64));
    c.threshold = to_vec(fg.dataset("threshold").read(torch::kFloat64));
    auto pixels = fg.dataset("ring_pixels").read(torch::kInt64).contiguous();
    c.ring_pixels.assign(pixels.data_ptr<int64_t>(), pixels.data_ptr<int64_t>() + pixels.numel());
    TESSERA_REQUIRE(DataError, c.frc.size() == c.frequency_per_m.size() && c.threshold.size() == c.frc.size() &&
                                   c.ring_pixels.size() == c.frc.size(),
                    path, ": /reconstruction/frc: the per-ring datasets differ in length");
    c.resolution_m = fg.dataset("resolution_m").read_scalar();
    c.nyquist_period_m = fg.dataset("nyquist_period_m").read_scalar();
    c.sampling_limited = fg.dataset("sampling_limited").read_scalar() != 0;
    auto region = fg.dataset("region").read(torch::kInt64).contiguous();
    auto alignment = to_vec(fg.dataset("alignment").read(torch::kFloat64));
    TESSERA_REQUIRE(DataError, region.numel() == 4 && alignment.size() == 5, path,
                    ": /reconstruction/frc: region needs 4 and alignment 5 values");
    const int64_t* rp = region.data_ptr<int64_t>();
    c.region = Rect{rp[0], rp[1], rp[2], rp[3]};
    c.alignment = FrcAlignment{alignment[0], alignment[1], alignment[2], alignment[3], alignment[4]};
    if (fg.has_attribute("halves")) r.frc_halves = fg.read_string_attribute("halves");
    r.frc = c;
  }
  if (f.has_attribute("data_fingerprint")) r.data_fingerprint = f.read_string_attribute("data_fingerprint");
  if (g.exists("optimizer_state")) {
    auto s = g.group("optimizer_state");
    for (const auto& tile : s.children()) {
      auto tg = s.group(tile);
      for (const auto& part : tg.children()) {
        auto t = tg.dataset(part).read(torch::kUInt8).contiguous();
        r.optimizer_states[tile + "/" + part] =
            std::string(reinterpret_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
      }
    }
  }
  return r;
}

}  // namespace tessera
