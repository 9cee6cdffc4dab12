// Electron geometry, the 4D-STEM layout (round trip and one test per
// validation error), pattern crop and bin, format detection, and the issue's
// figure: a simulated 300 kV, 20 mrad, 64 × 64 data set reconstructs with a
// correlation >= 0.98. TESSERA_SHOW_MESSAGES=1 prints the error messages.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <numeric>
#include <random>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/cxi_writer.h"
#include "data/simulate.h"
#include "data/stem4d_file.h"
#include "data/stem4d_shadow_shift.h"
#include "data/stem4d_writer.h"
#include "models/propagation.h"
#include "src/electron_optics.h"
#include "src/error.h"
#include "src/io/hdf5.h"
#include "src/threads.h"
#include "train/frame_chunks.h"
#include "train/pattern_reduction.h"
#include "train/reconstruction.h"
#include "train/run.h"
#include "train/scan_problem.h"

namespace fs = std::filesystem;
using namespace tessera;
namespace keys = tessera::stem4d_keys;

namespace {

class Stem4dTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("tessera_test_stem4d_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A small valid data set: 3 × 4 scan of 16 × 12 patterns at 300 keV.
  static Stem4dContent content(bool extras = false) {
    torch::manual_seed(5);
    Stem4dContent c;
    c.data = torch::floor(torch::rand({3, 4, 16, 12}) * 50);
    c.calibration.energy_kev = 300;
    c.calibration.step_y_angstrom = 1.5;
    c.calibration.step_x_angstrom = 2.0;
    c.calibration.dk_y = 0.04;
    c.calibration.dk_x = 0.05;
    if (extras) {
      c.calibration.convergence_mrad = 20;
      c.calibration.defocus_angstrom = -150;
      c.calibration.c3_mm = 1.2;
      auto bad = torch::zeros({16, 12}, torch::kInt32);
      bad[3][4] = 1;
      bad[15][0] = 7;
      c.bad_pixels = bad;
      GroundTruth t;
      t.object = torch::complex(torch::randn({1, 40, 40}), torch::randn({1, 40, 40}));
      t.probe = torch::complex(torch::randn({1, 16, 12}), torch::randn({1, 16, 12}));
      t.positions_px = torch::rand({12, 2}, torch::kDouble) * 10;
      c.truth = t;
    }
    return c;
  }

  // Writes a valid file, then lets edit change it with the HDF5 wrappers.
  std::string malformed(const std::string& name, const std::function<void(h5::File&)>& edit,
                        const Stem4dContent& c = content()) {
    const std::string p = path(name);
    write_stem4d(p, c);
    h5::File f = h5::File::open(p, h5::File::Mode::read_write);
    edit(f);
    f.close();
    return p;
  }

  static void replace(h5::File& f, const std::string& key, const torch::Tensor& data) {
    if (f.exists(key)) f.remove(key);
    f.create_dataset(key, data);
  }
  static void replace_scalar(h5::File& f, const std::string& key, double v) {
    if (f.exists(key)) f.remove(key);
    f.write_scalar(key, v);
  }

  fs::path dir_;
};

template <typename E = DataError>
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const E& e) {
    const std::string m = e.what();
    if (std::getenv("TESSERA_SHOW_MESSAGES")) std::cout << "  message: " << m << "\n";
    for (const auto& part : parts) EXPECT_NE(m.find(part), std::string::npos) << "message lacks \"" << part << "\": " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

void expect_open_error(const std::string& file, std::vector<std::string> parts) {
  parts.push_back(file);
  expect_error([&] { Stem4dFile f(file); }, parts);
}

// Radius (pixels) of the disc about the probe centre that holds half of
// sum |probe|² (the RMS radius of an Airy pattern diverges).
double half_power_radius(const torch::Tensor& probe) {
  auto i = torch::view_as_real(probe.to(torch::kComplexDouble)).pow(2).sum(-1);
  const int64_t h = i.size(0), w = i.size(1);
  auto y = torch::arange(h, torch::kFloat64).view({h, 1}) - h / 2, x = torch::arange(w, torch::kFloat64).view({1, w}) - w / 2;
  auto r = (y * y + x * x).sqrt().reshape({-1});
  auto order = r.argsort();
  auto cumulative = i.reshape({-1}).index_select(0, order).cumsum(0);
  const int64_t k = (cumulative < 0.5 * i.sum()).sum().item<int64_t>();
  return r.index_select(0, order)[k].item<double>();
}

}  // namespace

// ------------------------------------------------------- electron optics ---

TEST(ElectronOptics, RelativisticWavelength) {
  // Tabulated values (Kirkland, Advanced Computing in Electron Microscopy, table 2.2).
  EXPECT_NEAR(electron::wavelength_angstrom(300), 0.01969, 5e-6);
  EXPECT_NEAR(electron::wavelength_angstrom(200), 0.02508, 5e-6);
  EXPECT_NEAR(electron::wavelength_angstrom(100), 0.03701, 5e-6);
  // Non-relativistic limit: λ = h / sqrt(2 m e V) = 12.2643 / sqrt(V) Å.
  EXPECT_NEAR(electron::wavelength_angstrom(0.01) / (12.2643 / std::sqrt(10.0)), 1.0, 1e-5);
  // Relativity shortens the wavelength by (1 + eV / 2m0c²)^(-1/2): 12.7 % at 300 kV.
  const double classical = 12.2643 / std::sqrt(300e3);
  EXPECT_NEAR(electron::wavelength_angstrom(300) / classical, 1 / std::sqrt(1 + 300.0 / (2 * 510.999)), 1e-4);
  expect_error<SettingsError>([] { electron::wavelength_angstrom(0); }, {"beam energy", "keV"});
  expect_error<SettingsError>([] { electron::wavelength_angstrom(-3); }, {"beam energy"});
}

TEST(ElectronOptics, CalibrationConversions) {
  const double lambda = electron::wavelength_angstrom(300);
  const double dk = electron::mrad_to_inverse_angstrom(0.8, lambda);
  EXPECT_NEAR(dk, 0.8e-3 / lambda, 1e-15);
  EXPECT_NEAR(electron::inverse_angstrom_to_mrad(dk, lambda), 0.8, 1e-12);
  // The sample pixel is the inverse of the whole reciprocal extent.
  EXPECT_NEAR(electron::sample_pixel_angstrom(64, dk), 1 / (64 * dk), 1e-12);
  EXPECT_NEAR(electron::sample_pixel_angstrom(128, dk) * 2, electron::sample_pixel_angstrom(64, dk), 1e-12);
  EXPECT_NEAR(electron::aperture_radius_pixels({300, 20, 0, 0}, dk), 25.0, 1e-9);
  expect_error<SettingsError>([&] { electron::sample_pixel_angstrom(64, 0); }, {"reciprocal pixel size"});
}

TEST(ElectronOptics, ApertureRadiusMatchesConvergenceOverLambdaDk) {
  const double lambda = electron::wavelength_angstrom(300);
  for (double mrad_px : {0.8, 1.25}) {
    const double dk = electron::mrad_to_inverse_angstrom(mrad_px, lambda);
    const double radius = 20.0 / mrad_px;  // α / (λ Δk) in pixels
    auto probe = electron::aberration_probe({300, 20, 250, 0.5}, 64, 64, dk, dk, 1e5);
    auto far = torch::view_as_real(far_field(to_fft_order(probe))).pow(2).sum(-1);
    auto lit = (far > far.max() * 1e-6).to(torch::kFloat64);
    // Lit pixels: the disc of the aperture, area π r².
    EXPECT_NEAR(lit.sum().item<double>() / (M_PI * radius * radius), 1.0, 0.04) << mrad_px << " mrad/px";
    auto k = torch::fft::fftfreq(64, 1.0 / 64, torch::kFloat64);
    auto kr = (k.view({64, 1}).pow(2) + k.view({1, 64}).pow(2)).sqrt();
    const double outermost = (kr * lit).max().item<double>();
    EXPECT_LE(outermost, radius);
    EXPECT_GT(outermost, radius - 1);
  }
}

TEST(ElectronOptics, PowerDefocusAndSignConvention) {
  const double lambda = electron::wavelength_angstrom(300);
  const double dk = electron::mrad_to_inverse_angstrom(0.8, lambda);
  auto focused = electron::aberration_probe({300, 20, 0, 0}, 64, 64, dk, dk, 2.5e6);
  auto defocused = electron::aberration_probe({300, 20, 300, 0}, 64, 64, dk, dk, 2.5e6);
  for (const auto& p : {focused, defocused}) {
    EXPECT_EQ(p.scalar_type(), torch::kComplexFloat);
    EXPECT_NEAR(torch::view_as_real(p).to(torch::kFloat64).pow(2).sum().item<double>() / 2.5e6, 1.0, 1e-5);
  }
  // Centred in the window.
  auto i = torch::abs(focused);
  EXPECT_EQ(i.argmax().item<int64_t>(), 32 * 64 + 32);
  // Geometric optics: a defocused probe is a disc of radius α Δf, half of
  // its power within α Δf / sqrt(2); the focused one is diffraction limited
  // (half of the power within about λ / (2α) = 0.5 Å).
  const double pixel = electron::sample_pixel_angstrom(64, dk);
  const double r_focus = half_power_radius(focused), r_defocus = half_power_radius(defocused);
  EXPECT_LT(r_focus * pixel, 0.7);
  EXPECT_GT(r_defocus, 4 * r_focus);
  EXPECT_NEAR(r_defocus * pixel / (20e-3 * 300 / std::sqrt(2.0)), 1.0, 0.2);
  // Sign convention: Δf > 0 is the focused probe propagated Δf downstream
  // with the forward model's own Fresnel propagator.
  auto transfer = fresnel_transfer_function(64, 64, pixel * 1e-10, pixel * 1e-10, lambda * 1e-10, 300e-10);
  auto propagated = propagate(focused, transfer);
  auto diff = torch::abs(propagated - defocused).max().item<double>() / torch::abs(defocused).max().item<double>();
  EXPECT_LT(diff, 1e-3);
  auto opposite = propagate(focused, transfer.conj());
  EXPECT_GT(torch::abs(opposite - defocused).max().item<double>() / torch::abs(defocused).max().item<double>(), 0.1);
  // C3 adds (π/2) C3 λ³ k⁴ at the aperture edge.
  auto chi = electron::aberration_phase({300, 20, 0, 1.0}, 64, 64, dk, dk);
  const double k = 25 * dk;
  EXPECT_NEAR(chi[0][25].item<double>(), 0.5 * M_PI * 1e7 * std::pow(lambda, 3) * std::pow(k, 4), 1e-9);
  expect_error<SettingsError>([&] { electron::aberration_probe({300, 0.1, 0, 0}, 64, 64, dk, dk, 1); }, {"at least 1"});
}

// -------------------------------------------------------------- round trip ---

TEST_F(Stem4dTest, RoundTripAllFields) {
  const Stem4dContent c = content(true);
  const std::string p = path("scan.h5");
  write_stem4d(p, c);
  Stem4dFile f(p);
  EXPECT_EQ(f.scan_y(), 3);
  EXPECT_EQ(f.scan_x(), 4);
  EXPECT_EQ(f.num_frames(), 12);
  EXPECT_EQ(f.frame_h(), 16);
  EXPECT_EQ(f.frame_w(), 12);
  EXPECT_EQ(f.data_type(), "float32");
  const auto& cal = f.calibration();
  EXPECT_DOUBLE_EQ(cal.energy_kev, 300);
  EXPECT_DOUBLE_EQ(cal.wavelength_angstrom, electron::wavelength_angstrom(300));
  EXPECT_DOUBLE_EQ(cal.step_y_angstrom, 1.5);
  EXPECT_DOUBLE_EQ(cal.step_x_angstrom, 2.0);
  EXPECT_DOUBLE_EQ(cal.dk_y, 0.04);
  EXPECT_DOUBLE_EQ(cal.dk_x, 0.05);
  EXPECT_DOUBLE_EQ(*cal.convergence_mrad, 20);
  EXPECT_DOUBLE_EQ(*cal.defocus_angstrom, -150);
  EXPECT_DOUBLE_EQ(*cal.c3_mm, 1.2);
  const auto g = f.geometry();
  EXPECT_NEAR(g.pixel_y_m(), 1e-10 / (16 * 0.04), 1e-22);
  EXPECT_NEAR(g.pixel_x_m(), 1e-10 / (12 * 0.05), 1e-22);

  auto pos = f.positions_m();
  ASSERT_EQ(pos.sizes(), (torch::IntArrayRef{12, 2}));
  EXPECT_NEAR(pos[6][0].item<double>(), 1 * 1.5e-10, 1e-22);  // j = 6: iy = 1, ix = 2
  EXPECT_NEAR(pos[6][1].item<double>(), 2 * 2.0e-10, 1e-22);

  auto valid = f.valid_mask();
  EXPECT_TRUE(f.has_mask());
  EXPECT_TRUE(torch::equal(valid, *c.bad_pixels == 0));
  auto expected = c.data.reshape({12, 16, 12}) * valid;
  auto all = f.read_frames(0, 12);
  EXPECT_TRUE(torch::equal(all, expected));
  // A range across scan rows: the rest of row 0, all of row 1, the start of row 2.
  EXPECT_TRUE(torch::equal(f.read_frames(3, 9), expected.narrow(0, 3, 6)));
  EXPECT_TRUE(torch::equal(f.read_frames(5, 7), expected.narrow(0, 5, 2)));
  EXPECT_EQ(f.read_frames(4, 4).size(0), 0);
  const std::vector<int64_t> idx{11, 2, 3, 4, 5, 0, 0, 7};
  auto picked = f.read_frames(idx);
  for (size_t i = 0; i < idx.size(); ++i) EXPECT_TRUE(torch::equal(picked[static_cast<int64_t>(i)], expected[idx[i]]));

  auto t = f.ground_truth();
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(torch::equal(t->object, c.truth->object));
  EXPECT_TRUE(torch::equal(t->probe, c.truth->probe));
  EXPECT_TRUE(torch::equal(t->positions_px, c.truth->positions_px));
  EXPECT_TRUE(f.problems().empty()) << f.problems().front();
  const std::string s = f.summary();
  if (std::getenv("TESSERA_SHOW_MESSAGES")) std::cout << s;
  EXPECT_NE(s.find("3 × 4 scan positions of 16 × 12"), std::string::npos) << s;
  EXPECT_NE(s.find("300 keV"), std::string::npos) << s;
  EXPECT_NE(s.find("2 of 192"), std::string::npos) << s;

  // The layout as other programs see it.
  h5::File raw = h5::File::open(p);
  EXPECT_EQ(raw.group(keys::kGroup).read_string_attribute("layout"), keys::kLayoutName);
  EXPECT_EQ(raw.dataset(keys::kData).shape(), (std::vector<int64_t>{3, 4, 16, 12}));
  EXPECT_EQ(raw.dataset(keys::kStep).shape(), (std::vector<int64_t>{2}));
  EXPECT_TRUE(raw.exists(keys::kInverseAngstrom));
  EXPECT_FALSE(raw.exists(keys::kMrad));
}

TEST_F(Stem4dTest, CalibrationInMradScalarsAndIntegerCounts) {
  Stem4dContent c = content();
  c.store_mrad = true;
  const std::string p = path("mrad.h5");
  write_stem4d(p, c);
  {
    Stem4dFile f(p);
    EXPECT_NEAR(f.calibration().dk_y, 0.04, 1e-12);
    EXPECT_NEAR(f.calibration().mrad_per_pixel_x(), 0.05 * electron::wavelength_angstrom(300) * 1e3, 1e-12);
    EXPECT_FALSE(f.has_mask());
    EXPECT_FALSE(f.ground_truth().has_value());
  }
  // What another program may write: uint16 counts, scalar step and calibration, both units.
  h5::File f = h5::File::open(p, h5::File::Mode::read_write);
  f.remove(keys::kData);
  h5::DatasetOptions o;
  o.file_type = h5::FileType::uint16;
  f.create_dataset(keys::kData, c.data.to(torch::kInt32), o);
  replace_scalar(f, keys::kStep, 0.7);
  replace_scalar(f, keys::kMrad, 1.0);
  replace_scalar(f, keys::kInverseAngstrom, 1e-3 / electron::wavelength_angstrom(300));
  f.close();
  Stem4dFile g(p);
  EXPECT_EQ(g.data_type(), "uint16");
  EXPECT_DOUBLE_EQ(g.calibration().step_x_angstrom, 0.7);
  EXPECT_DOUBLE_EQ(g.calibration().step_y_angstrom, 0.7);
  EXPECT_NEAR(g.calibration().mrad_per_pixel_y(), 1.0, 1e-12);
  EXPECT_TRUE(torch::equal(g.read_frames(0, 12), c.data.reshape({12, 16, 12})));
}

// ------------------------------------------------------- validation errors ---

TEST_F(Stem4dTest, MissingFile) { expect_open_error(path("nothing.h5"), {"not found"}); }

TEST_F(Stem4dTest, TextFileIsNotHdf5) {
  const std::string p = path("notes.h5");
  std::ofstream(p) << "Ry Rx Qy Qx\n";
  expect_open_error(p, {"is not an HDF5 file"});
}

TEST_F(Stem4dTest, TruncatedFile) {
  const std::string p = path("cut.h5");
  Stem4dContent c = content();
  c.data = torch::rand({8, 8, 32, 32});
  write_stem4d(p, c);
  fs::resize_file(p, fs::file_size(p) / 2);
  expect_open_error(p, {"truncated"});
}

TEST_F(Stem4dTest, MissingData) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { f.remove(keys::kData); }), {keys::kData, "is missing", "Ry, Rx, Qy, Qx"});
}

TEST_F(Stem4dTest, HdfFileWithoutTheLayout) {
  const std::string p = path("other.h5");
  {
    h5::File f = h5::File::create(p);
    f.create_dataset("images", torch::zeros({2, 2}));
    f.close();
  }
  expect_open_error(p, {keys::kData, "is missing", "not in tessera's 4D-STEM layout", "images"});
}

TEST_F(Stem4dTest, DataOfWrongRank) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kData, torch::rand({12, 16, 12})); }),
                    {keys::kData, "12 × 16 × 12", "expected 4 dimensions", "(Ry, Rx, Qy, Qx)"});
}

TEST_F(Stem4dTest, ComplexData) {
  expect_open_error(
      malformed("a.h5", [](h5::File& f) { replace(f, keys::kData, torch::complex(torch::rand({3, 4, 16, 12}), torch::rand({3, 4, 16, 12}))); }),
      {keys::kData, "complex"});
}

TEST_F(Stem4dTest, EmptyData) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kData, torch::zeros({0, 4, 16, 12})); }),
                    {keys::kData, "is empty"});
}

TEST_F(Stem4dTest, MissingEnergy) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { f.remove(keys::kEnergy); }), {keys::kEnergy, "is missing", "keV"});
}

TEST_F(Stem4dTest, NonPositiveEnergy) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kEnergy, 0); }),
                    {keys::kEnergy, "is 0", "must be positive"});
  expect_open_error(malformed("b.h5", [](h5::File& f) { replace_scalar(f, keys::kEnergy, -300); }),
                    {keys::kEnergy, "is -300", "must be positive"});
}

TEST_F(Stem4dTest, NonFiniteEnergy) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kEnergy, std::nan("")); }),
                    {keys::kEnergy, "is NaN"});
}

TEST_F(Stem4dTest, EnergyInElectronVolts) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kEnergy, 300000); }),
                    {keys::kEnergy, "300000 keV", "store 300"});
}

TEST_F(Stem4dTest, MissingScanStep) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { f.remove(keys::kStep); }), {keys::kStep, "is missing", "Å"});
}

TEST_F(Stem4dTest, NonPositiveScanStep) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kStep, torch::tensor({1.0, -2.0}, torch::kFloat64)); }),
                    {keys::kStep, "is -2", "must be positive"});
}

TEST_F(Stem4dTest, ScanStepInMetres) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kStep, 1.5e-10); }),
                    {keys::kStep, "the layout stores Å"});
}

TEST_F(Stem4dTest, ScanStepOfWrongShape) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kStep, torch::ones({3}, torch::kFloat64)); }),
                    {keys::kStep, "holds 3 values", "[y, x]"});
}

TEST_F(Stem4dTest, MissingCalibration) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { f.remove(keys::kInverseAngstrom); }),
                    {keys::kInverseAngstrom, "is missing", keys::kMrad, "Å⁻¹ or mrad per pixel"});
}

TEST_F(Stem4dTest, NonPositiveCalibration) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kInverseAngstrom, 0); }),
                    {keys::kInverseAngstrom, "is 0", "must be positive"});
  expect_open_error(malformed("b.h5", [](h5::File& f) {
                      f.remove(keys::kInverseAngstrom);
                      replace_scalar(f, keys::kMrad, -0.8);
                    }),
                    {keys::kMrad, "is -0.8", "must be positive"});
}

TEST_F(Stem4dTest, CalibrationsThatDisagree) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kMrad, 0.8); }),
                    {keys::kMrad, keys::kInverseAngstrom, "disagree"});
}

TEST_F(Stem4dTest, NonPositiveConvergence) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kConvergence, -20); }),
                    {keys::kConvergence, "is -20", "must be positive"});
}

TEST_F(Stem4dTest, ConvergenceInRadians) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kConvergence, 0.02); }),
                    {keys::kConvergence, "less than one detector pixel", "radians"});
}

TEST_F(Stem4dTest, NonFiniteDefocusAndC3) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kDefocus, std::nan("")); }),
                    {keys::kDefocus, "is NaN"});
  expect_open_error(malformed("b.h5", [](h5::File& f) { replace_scalar(f, keys::kC3, INFINITY); }),
                    {keys::kC3, "is infinite"});
}

TEST_F(Stem4dTest, MaskOfWrongShape) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kMask, torch::zeros({12, 16}, torch::kInt32)); }),
                    {keys::kMask, "12 × 16", "16 × 12", "transposed"});
}

TEST_F(Stem4dTest, MaskFlagsEveryPixel) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kMask, torch::ones({16, 12}, torch::kInt32)); }),
                    {keys::kMask, "every pixel"});
}

TEST_F(Stem4dTest, MaskOfFloats) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace(f, keys::kMask, torch::zeros({16, 12})); }),
                    {keys::kMask, "float32", "integer flags"});
}

TEST_F(Stem4dTest, NaNCountsNameThePattern) {
  const std::string p = malformed("a.h5", [](h5::File& f) {
    auto d = content().data.clone();
    d[2][1][5][5] = NAN;
    replace(f, keys::kData, d);
  });
  Stem4dFile f(p);  // counts are checked when read
  expect_error([&] { f.read_frames(0, 12); }, {p, keys::kData, "pattern 9", "iy = 2, ix = 1", "NaN in 1 pixel"});
  EXPECT_NO_THROW(f.read_frames(0, 9));
  EXPECT_FALSE(f.problems().empty());
}

TEST_F(Stem4dTest, NegativeCounts) {
  const std::string p = malformed("a.h5", [](h5::File& f) {
    auto d = content().data.clone();
    d[0][3][0][1] = -4;
    replace(f, keys::kData, d);
  });
  Stem4dFile f(p);
  expect_error([&] { f.read_frames(std::vector<int64_t>{3}); }, {"pattern 3", "negative counts", "lowest -4", "clip"});
}

TEST_F(Stem4dTest, NegativeCountsOnABadPixelAreIgnored) {
  const std::string p = malformed("a.h5", [](h5::File& f) {
    auto d = content(true).data.clone();
    d[0][3][3][4] = -1;  // a dead pixel that the mask flags
    replace(f, keys::kData, d);
  }, content(true));
  EXPECT_NO_THROW(Stem4dFile(p).read_frames(0, 12));
}

TEST_F(Stem4dTest, IncompleteTruth) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { f.remove(keys::kTruthProbe); }, content(true)),
                    {keys::kTruthProbe, "is missing"});
}

TEST_F(Stem4dTest, WriterRejectsBadContent) {
  Stem4dContent c = content();
  c.data[1][1][2][2] = -1;
  expect_error([&] { write_stem4d(path("w.h5"), c); }, {"content.data", "pattern 5", "negative"});
  c = content();
  c.calibration.dk_x = 0;
  expect_error([&] { write_stem4d(path("w.h5"), c); }, {"content.calibration.dk_x", "positive"});
  c = content();
  c.data = torch::rand({12, 16, 12});
  expect_error([&] { write_stem4d(path("w.h5"), c); }, {"content.data", "(Ry, Rx, Qy, Qx)"});
  EXPECT_FALSE(fs::exists(path("w.h5")));
}

// -------------------------------------------------------- crop and binning ---

TEST(PatternReduction, CropKeepsTheZeroOrderCentred) {
  PatternReduction r(64, 64, 48, 40, 1);
  EXPECT_EQ(r.out_h(), 48);
  EXPECT_EQ(r.out_w(), 40);
  auto f = torch::zeros({1, 64, 64});
  f[0][32][32] = 7;  // the zero order of a measured pattern
  auto out = r.frames(f, torch::ones({64, 64}, torch::kBool));
  EXPECT_EQ(out[0][24][20].item<float>(), 7);
  EXPECT_EQ(out.sum().item<float>(), 7);
  // Δk is kept, so the sample pixel grows by 64 / 48 and 64 / 40.
  ExperimentGeometry g;
  g.frame_h = g.frame_w = 64;
  g.reciprocal_pixel_y_per_m = g.reciprocal_pixel_x_per_m = 4e8;
  auto c = r.geometry(g);
  EXPECT_NEAR(c.pixel_y_m() / g.pixel_y_m(), 64.0 / 48, 1e-12);
  EXPECT_NEAR(c.pixel_x_m() / g.pixel_x_m(), 64.0 / 40, 1e-12);
  expect_error<SettingsError>([] { PatternReduction(64, 64, 80, 80, 1, "d.h5"); }, {"d.h5", "at most the pattern size"});
}

TEST(PatternReduction, BinSumsCountsAndKeepsTheSamplePixel) {
  torch::manual_seed(2);
  // Counts away from the edges (as in a pattern whose disc fits the detector).
  auto f = torch::zeros({3, 64, 64});
  f.slice(1, 4, 60).slice(2, 4, 60) = torch::floor(torch::rand({3, 56, 56}) * 10);
  auto all_good = torch::ones({64, 64}, torch::kBool);
  for (int64_t b : {2, 3, 4}) {
    PatternReduction r(64, 64, 0, 0, b);
    auto out = r.frames(f, all_good);
    ASSERT_EQ(out.sizes(), (torch::IntArrayRef{3, 64 / b, 64 / b})) << "bin " << b;
    EXPECT_TRUE(torch::allclose(out.sum({1, 2}), f.sum({1, 2}))) << "bin " << b;
    // The zero order stays at the centre pixel, whole.
    auto delta = torch::zeros({1, 64, 64});
    delta[0][32][32] = 7;
    auto d = r.frames(delta, all_good);
    EXPECT_FLOAT_EQ(d[0][(64 / b) / 2][(64 / b) / 2].item<float>(), 7.0f) << "bin " << b;
    EXPECT_FLOAT_EQ(d.sum().item<float>(), 7.0f) << "bin " << b;
  }
  // An odd bin is b whole pixels; an even one splits its edge pixels in half.
  auto delta = torch::zeros({1, 64, 64});
  delta[0][32][33] = 8;
  auto d3 = PatternReduction(64, 64, 0, 0, 3).frames(delta, all_good);
  EXPECT_FLOAT_EQ(d3[0][10][10].item<float>(), 8.0f);
  auto d2 = PatternReduction(64, 64, 0, 0, 2).frames(delta, all_good);
  EXPECT_FLOAT_EQ(d2[0][16][16].item<float>(), 4.0f);
  EXPECT_FLOAT_EQ(d2[0][16][17].item<float>(), 4.0f);
  // Binning keeps the sample pixel, for both calibrations.
  PatternReduction r(64, 64, 0, 0, 4);
  for (bool electron : {true, false}) {
    ExperimentGeometry g;
    g.frame_h = g.frame_w = 64;
    g.wavelength_m = 1e-10;
    if (electron) {
      g.reciprocal_pixel_y_per_m = g.reciprocal_pixel_x_per_m = 4e8;
    } else {
      g.distance_m = 2;
      g.detector_pixel_y_m = g.detector_pixel_x_m = 75e-6;
    }
    auto b = r.geometry(g);
    EXPECT_EQ(b.frame_h, 16);
    EXPECT_NEAR(b.pixel_y_m() / g.pixel_y_m(), 1.0, 1e-12);
    EXPECT_NEAR(b.pixel_x_m() / g.pixel_x_m(), 1.0, 1e-12);
  }
  EXPECT_EQ(PatternReduction(64, 64, 0, 0, 3).out_h(), 21);
  expect_error<SettingsError>([] { PatternReduction(64, 64, 0, 0, 16); }, {"at least 8 x 8"});
}

TEST(PatternReduction, BadPixelsAreRescaledOrDropped) {
  auto f = torch::full({1, 16, 16}, 5.0f);
  auto valid = torch::ones({16, 16}, torch::kBool);
  valid[4][4] = false;  // the centre of output pixel [2, 2]: estimated from the rest of its bin
  f[0][4][4] = 1000;    // a hot pixel under the mask must not leak in
  valid.slice(0, 9, 12).slice(1, 9, 12) = false;  // all of output pixel [5, 5]: bad
  PatternReduction r(16, 16, 0, 0, 2);
  auto out = r.frames(f, valid);
  EXPECT_FLOAT_EQ(out[0][2][2].item<float>(), 20.0f);
  EXPECT_FLOAT_EQ(out[0][5][5].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(out[0][4][5].item<float>(), 20.0f);  // a quarter of its weight is bad
  EXPECT_FLOAT_EQ(out[0][0][0].item<float>(), 20.0f);  // reaches past the edge: rescaled too
  auto v = r.valid(valid);
  EXPECT_TRUE(v[2][2].item<bool>());
  EXPECT_FALSE(v[5][5].item<bool>());
  EXPECT_EQ(v.sum().item<int64_t>(), 63);
}

// ----------------------------------------------- loading and format detection ---

TEST_F(Stem4dTest, FormatDetectionAndLoadOptions) {
  const std::string stem = path("s.h5"), cxi = path("x.cxi"), other = path("o.h5");
  SimulationSettings s;
  s.frame = 32;
  s.scan_y = 3;
  s.scan_x = 5;
  s.mrad_per_pixel = 1.6;  // 20 mrad = 12.5 pixels in radius
  s.defocus_angstrom = 100;
  s.step_angstrom = 2;
  s.photons = 1e4;
  write_stem4d(stem, simulate_stem4d(s));
  SimulationSettings x;
  x.frame = 16;
  x.scan_y = x.scan_x = 3;
  write_cxi(cxi, simulate(x));
  {
    h5::File f = h5::File::create(other);
    f.create_dataset("data", torch::zeros({2, 2}));
    f.close();
  }
  EXPECT_EQ(detect_data_format(stem), DataFormat::stem4d);
  EXPECT_EQ(detect_data_format(cxi), DataFormat::cxi);
  expect_error([&] { detect_data_format(other); }, {other, "neither a CXI file", "/stem4d", "top level: data"});
  expect_error([&] { ScanProblem::from_file(path("none.h5")); }, {"not found"});

  auto x_problem = ScanProblem::from_file(cxi);
  EXPECT_EQ(x_problem.scan.num_positions(), 9);
  // Crop and bin apply to CXI data too: the far-field geometry follows.
  LoadOptions x_bin;
  x_bin.bin = 2;
  auto x_binned = ScanProblem::from_file(cxi, x_bin);
  EXPECT_EQ(x_binned.scan.frame_h, 8);
  EXPECT_NEAR(x_binned.experiment.pixel_y_m() / x_problem.experiment.pixel_y_m(), 1.0, 1e-12);
  EXPECT_NEAR(x_binned.experiment.detector_pixel_x_m / x_problem.experiment.detector_pixel_x_m, 2.0, 1e-12);
  EXPECT_EQ(x_binned.read_frames({0, 1}).sizes(), (torch::IntArrayRef{2, 8, 8}));
  LoadOptions no_aperture;
  no_aperture.defocus_angstrom = 10;
  // On this X-ray file electron optics are refused as such (issue 14) ...
  expect_error<SettingsError>([&] { ScanProblem::from_file(cxi, no_aperture); }, {"--defocus-angstrom", "X-ray"});
  // ... and declared electron data still need the aperture.
  no_aperture.energy_kev = 300;
  expect_error<SettingsError>([&] { ScanProblem::from_file(cxi, no_aperture); }, {"no convergence semi-angle"});

  // Full patterns: the sample pixel 1/(N Δk), the file's optics give the probe.
  auto full = ScanProblem::from_file(stem);
  const double lambda = electron::wavelength_angstrom(300);
  const double dk = electron::mrad_to_inverse_angstrom(1.6, lambda);
  EXPECT_NEAR(full.experiment.pixel_y_m(), 1e-10 / (32 * dk), 1e-20);
  EXPECT_EQ(full.scan.num_positions(), 15);
  // Positions hold float32 values (what the float kernels read, src/geometry.h):
  // a difference of two is exact to their rounding, 2^-24 of each (< 64 px here).
  EXPECT_NEAR((full.scan.positions_px[1][1] - full.scan.positions_px[0][1]).item<double>(), 2 / (1e10 * full.experiment.pixel_x_m()), 2 * 64 * std::ldexp(1.0, -24));
  ASSERT_TRUE(full.probe_guess.has_value());
  ASSERT_TRUE(full.truth.has_value());
  // No noise in the probe: the file's optics rebuild the true probe exactly.
  // (Scaled to the mean counts, which the phantom's scattering barely changes.)
  auto guess = (*full.probe_guess)[0], truth = full.truth->probe[0];
  EXPECT_LT(torch::abs(guess / torch::abs(guess).max() - truth / torch::abs(truth).max()).max().item<double>(), 1e-4);
  std::vector<int64_t> every(15);
  std::iota(every.begin(), every.end(), 0);
  const double mean_counts = full.read_frames(every).sum().item<double>() / 15;
  EXPECT_NEAR(torch::view_as_real(guess).pow(2).sum().item<double>() / mean_counts, 1.0, 0.05);

  // Bin 2: same sample pixel, windows of 16, Δk doubled: the aperture is half as many pixels.
  LoadOptions b2;
  b2.bin = 2;
  auto binned = ScanProblem::from_file(stem, b2);
  EXPECT_EQ(binned.scan.frame_h, 16);
  EXPECT_NEAR(binned.experiment.pixel_y_m() / full.experiment.pixel_y_m(), 1.0, 1e-12);
  EXPECT_TRUE(torch::allclose(binned.scan.positions_px.diff(1, 0), full.scan.positions_px.diff(1, 0)));
  auto frames = binned.read_frames({4});
  EXPECT_EQ(frames.sizes(), (torch::IntArrayRef{1, 16, 16}));
  // Counts are conserved but for the few scattered to the outermost pixels,
  // which the edge bins rescale (centred bins of 2 reach half a pixel past the edge).
  EXPECT_NEAR(frames.sum().item<double>() / full.read_frames({4}).sum().item<double>(), 1.0, 1e-3);
  auto far = torch::view_as_real(far_field(to_fft_order((*binned.probe_guess)[0]))).pow(2).sum(-1);
  const double lit = (far > far.max() * 1e-6).sum().item<double>();
  EXPECT_NEAR(lit / (M_PI * 6.25 * 6.25), 1.0, 0.1);
  // The truth follows the binning (same pixel grid, shifted origin) and still scores itself.
  ASSERT_TRUE(binned.truth.has_value());
  EXPECT_EQ(binned.truth->object.size(1), binned.scan.object_h);
  auto self = score_against_truth(full, full.truth->object).value();
  EXPECT_GT(self.correlation, 0.999);

  // Crop to 24: Δk kept, sample pixel × 32/24, overrides replace the file's optics.
  LoadOptions c24;
  c24.crop_h = c24.crop_w = 24;
  c24.convergence_mrad = 10;
  auto cropped = ScanProblem::from_file(stem, c24);
  EXPECT_EQ(cropped.scan.frame_w, 24);
  EXPECT_NEAR(cropped.experiment.pixel_x_m() / full.experiment.pixel_x_m(), 32.0 / 24, 1e-12);
  EXPECT_FALSE(cropped.truth.has_value());
  far = torch::view_as_real(far_field(to_fft_order((*cropped.probe_guess)[0]))).pow(2).sum(-1);
  EXPECT_NEAR((far > far.max() * 1e-6).sum().item<double>() / (M_PI * 6.25 * 6.25), 1.0, 0.1);
}

// ------------------------------------------- geometry as instruments record it ---

// The sign convention of /stem4d/scan_rotation_deg, spelled out: a step along
// the scan's +x at θ = +90° moves the probe along the detector's +y.
TEST(ScanRotation, ConventionAsDocumented) {
  const auto steps = torch::tensor({{0.0, 2.0}, {3.0, 0.0}}, torch::kFloat64);  // [y, x]: one x step, one y step
  const auto r90 = scan_to_detector_axes(steps, 90);
  EXPECT_NEAR(r90[0][0].item<double>(), 2.0, 1e-12);  // x step -> +y
  EXPECT_NEAR(r90[0][1].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(r90[1][0].item<double>(), 0.0, 1e-12);  // y step -> −x
  EXPECT_NEAR(r90[1][1].item<double>(), -3.0, 1e-12);
  const auto r30 = scan_to_detector_axes(steps, 30);
  EXPECT_NEAR(r30[0][0].item<double>(), 2.0 * std::sin(M_PI / 6), 1e-12);
  EXPECT_NEAR(r30[0][1].item<double>(), 2.0 * std::cos(M_PI / 6), 1e-12);
  EXPECT_TRUE(torch::allclose(scan_to_detector_axes(r30, -30), steps, 0, 1e-12));
}

TEST_F(Stem4dTest, RotationZeroOrderAndMeasuredPositionsRoundTrip) {
  // A step and a rotation: positions_m() is the raster rotated into detector axes.
  Stem4dContent c = content();
  c.calibration.scan_rotation_deg = -126;
  c.calibration.zero_order_px = std::pair{7.25, 5.5};
  write_stem4d(path("r.h5"), c);
  Stem4dFile f(path("r.h5"));
  ASSERT_TRUE(f.calibration().scan_rotation_deg.has_value());
  EXPECT_EQ(*f.calibration().scan_rotation_deg, -126);
  EXPECT_FALSE(f.has_measured_positions());
  const auto g = f.geometry();
  ASSERT_TRUE(g.zero_order_px.has_value());
  EXPECT_EQ(g.zero_order_px->first, 7.25);
  EXPECT_EQ(g.zero_order_px->second, 5.5);
  EXPECT_EQ(g.zero_order_source, "file");
  auto iy = torch::arange(3, torch::kFloat64).view({-1, 1}).expand({3, 4}).reshape({-1});
  auto ix = torch::arange(4, torch::kFloat64).view({1, -1}).expand({3, 4}).reshape({-1});
  const auto raster = torch::stack({iy * 1.5, ix * 2.0}, 1);
  EXPECT_TRUE(torch::allclose(f.positions_m(), scan_to_detector_axes(raster, -126) * 1e-10, 0, 1e-22));
  const auto text = f.summary();
  EXPECT_NE(text.find("-126°"), std::string::npos) << text;
  EXPECT_NE(text.find("[7.25, 5.5]"), std::string::npos) << text;
  // Old files: no rotation, no zero order.
  write_stem4d(path("plain.h5"), content());
  EXPECT_FALSE(Stem4dFile(path("plain.h5")).geometry().zero_order_px.has_value());
  EXPECT_TRUE(torch::allclose(Stem4dFile(path("plain.h5")).positions_m(), raster * 1e-10, 0, 1e-22));

  // Measured positions instead of a step, rotated like the raster would be.
  Stem4dContent m = content();
  m.calibration.step_y_angstrom = m.calibration.step_x_angstrom = 0;
  m.calibration.scan_rotation_deg = 12;
  const auto measured = raster + torch::rand({12, 2}, torch::kFloat64) * 0.3;
  m.positions_angstrom = measured;
  write_stem4d(path("m.h5"), m);
  Stem4dFile fm(path("m.h5"));
  EXPECT_TRUE(fm.has_measured_positions());
  EXPECT_TRUE(torch::allclose(fm.positions_m(), scan_to_detector_axes(measured, 12) * 1e-10, 0, 1e-22));
  EXPECT_NE(fm.summary().find("measured"), std::string::npos);
  // Both a step and positions: the positions are used.
  m.calibration.step_y_angstrom = m.calibration.step_x_angstrom = 9;
  write_stem4d(path("both.h5"), m);
  EXPECT_TRUE(torch::allclose(Stem4dFile(path("both.h5")).positions_m(), fm.positions_m()));
}

TEST_F(Stem4dTest, ScanRotationMustBeDegrees) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kRotation, 400); }),
                    {keys::kRotation, "is 400", "degrees", "-360 and 360"});
  expect_open_error(malformed("b.h5", [](h5::File& f) { replace_scalar(f, keys::kRotation, std::nan("")); }),
                    {keys::kRotation, "NaN"});
  expect_open_error(malformed("c.h5", [](h5::File& f) { replace(f, keys::kRotation, torch::ones({2}, torch::kFloat64)); }),
                    {keys::kRotation, "holds 2 values", "a single number"});
}

TEST_F(Stem4dTest, ZeroOrderMustBeAPairInsideThePatterns) {
  expect_open_error(malformed("a.h5", [](h5::File& f) { replace_scalar(f, keys::kZeroOrder, 8); }),
                    {keys::kZeroOrder, "needs two", "[y, x]"});
  expect_open_error(
      malformed("b.h5", [](h5::File& f) { replace(f, keys::kZeroOrder, torch::tensor({8.0, 12.5}, torch::kFloat64)); }),
      {keys::kZeroOrder, "x = 12.5", "outside the patterns", "0 to 11"});
  expect_open_error(
      malformed("c.h5", [](h5::File& f) { replace(f, keys::kZeroOrder, torch::tensor({-3.0, 5.0}, torch::kFloat64)); }),
      {keys::kZeroOrder, "y = -3"});
  expect_open_error(
      malformed("d.h5", [](h5::File& f) { replace(f, keys::kZeroOrder, torch::tensor({std::nan(""), 5.0}, torch::kFloat64)); }),
      {keys::kZeroOrder, "NaN"});
}

TEST_F(Stem4dTest, MeasuredPositionsAreValidated) {
  expect_open_error(
      malformed("a.h5", [](h5::File& f) { replace(f, keys::kPositions, torch::zeros({3, 4, 2}, torch::kFloat64)); }),
      {keys::kPositions, "expected (12, 2)", "reshape the (Ry, Rx, 2) array"});
  expect_open_error(malformed("b.h5",
                              [](h5::File& f) {
                                auto q = torch::rand({12, 2}, torch::kFloat64);
                                q[5][1] = std::nan("");
                                replace(f, keys::kPositions, q);
                              }),
                    {keys::kPositions, "NaN or infinite", "pattern 5 (scan position iy = 1, ix = 1)"});
  expect_open_error(
      malformed("c.h5", [](h5::File& f) { replace(f, keys::kPositions, torch::ones({12, 2}, torch::kFloat64)); }),
      {keys::kPositions, "the same position"});
  expect_open_error(malformed("d.h5",
                              [](h5::File& f) {
                                f.remove(keys::kStep);
                                replace(f, keys::kPositions, torch::rand({12, 2}, torch::kFloat64) * 1e12);
                              }),
                    {keys::kPositions, "makes the scan span", "positions (Å)"});
  expect_open_error(malformed("e.h5", [](h5::File& f) { f.remove(keys::kStep); }), {keys::kStep, "is missing", keys::kPositions});
}

namespace {

// 300 kV, 20 mrad, 32-pixel patterns (1.6 mrad per pixel: disc radius 12.5 px,
// sample pixel 0.77 Å), defocused probe, scan rotated against the detector.
SimulationSettings rotated_scan(double rotation_deg, double defocus_angstrom) {
  SimulationSettings s;
  s.frame = 32;
  s.mrad_per_pixel = 1.6;
  s.defocus_angstrom = defocus_angstrom;  // probe about 2 α Δf = 10 Å = 13 px across for 250 Å
  s.scan_y = s.scan_x = 12;
  s.step_angstrom = 2.0;  // 2.6 px
  s.photons = 1e6;
  s.scan_rotation_deg = rotation_deg;
  return s;
}

}  // namespace

// The sign convention tested against a simulation: a scan rotated by +30°
// reconstructs with the file's rotation, and not with −30° or none.
TEST_F(Stem4dTest, ScanRotationSignAgainstASimulation) {
  configure_threads(0);
  const std::string p = path("rotated.h5");
  write_stem4d(p, simulate_stem4d(rotated_scan(30, 250)));
  auto score = [&](double rotation, std::optional<double> epsilon_scale) {
    h5::File f = h5::File::open(p, h5::File::Mode::read_write);
    replace_scalar(f, keys::kRotation, rotation);
    f.close();
    auto problem = ScanProblem::from_file(p);
    ReconstructionSettings rs;
    rs.iterations = 40;
    rs.probe_from = 20;
    rs.quiet = true;
    rs.adam_epsilon_scale = epsilon_scale;
    Reconstruction rec(problem, rs);
    for (int i = 0; i < rs.iterations; ++i) rec.iterate();
    return score_against_truth(problem, rec.object()).value().correlation;
  };
  // How far a wrong rotation lands from the truth depends on the optimiser:
  // the margins below were measured with Adam's own epsilon (0.983 with
  // +30°, 0.700 with -30°, 0.747 with 0°: the phantom's coarse features
  // survive a wrong rotation in part, its fine ones do not). The default
  // epsilon (3 x the gradient RMS) recovers more of those coarse features
  // (0.85 with 0°), so it is held to the ranking and the right rotation's
  // figure only.
  const double right = score(30, 0.0), opposite = score(-30, 0.0), none = score(0, 0.0);
  std::printf("scan rotated by +30°, Adam's own epsilon: correlation %.4f with +30° in the file, %.4f with -30°, "
              "%.4f with 0°\n", right, opposite, none);
  EXPECT_GE(right, 0.95);
  EXPECT_LT(opposite, right - 0.2);
  EXPECT_LT(none, right - 0.2);
  const double d_right = score(30, std::nullopt), d_opposite = score(-30, std::nullopt),
               d_none = score(0, std::nullopt);
  std::printf("the same, default settings: %.4f with +30°, %.4f with -30°, %.4f with 0°\n", d_right, d_opposite,
              d_none);
  EXPECT_GE(d_right, 0.95);
  EXPECT_LT(d_opposite, d_right - 0.1);
  EXPECT_LT(d_none, d_right - 0.1);
}

// The model-free check finds the rotation for either defocus sign, and a
// mirrored (transposed) scan.
TEST_F(Stem4dTest, ShadowShiftFindsRotationAndDefocusSign) {
  for (double defocus : {250.0, -250.0}) {
    auto c = simulate_stem4d(rotated_scan(30, defocus));
    write_stem4d(path("s.h5"), c);
    Stem4dFile f(path("s.h5"));
    std::string why;
    const auto shift = measure_shadow_shift(f, &why);
    ASSERT_TRUE(shift.has_value()) << why;
    const double found = defocus > 0 ? shift->rotation_if_defocus_positive_deg : shift->rotation_if_defocus_negative_deg;
    const std::string text = describe_shadow_shift(*shift, f.calibration());
    std::printf("Δf = %+.0f Å, rotation 30°: %s", defocus, text.c_str());
    EXPECT_NEAR(found, 30, 5) << text;
    EXPECT_FALSE(shift->mirrored) << text;
    EXPECT_GT(shift->correlation, 0.5) << text;
    ASSERT_TRUE(shift->defocus_magnitude_angstrom.has_value());
    // Rough: the half-disc images average many shifts (measured 192 and 222 Å).
    EXPECT_NEAR(*shift->defocus_magnitude_angstrom, 250, 75) << text;
    EXPECT_NE(text.find("agrees"), std::string::npos) << text;
    // The same data with the other rotation in the file: flagged.
    c.calibration.scan_rotation_deg = -30;
    write_stem4d(path("w.h5"), c);
    Stem4dFile w(path("w.h5"));
    EXPECT_NE(describe_shadow_shift(*measure_shadow_shift(w), w.calibration()).find("disagrees by"), std::string::npos);
  }
  // Scan axes transposed against the detector: no rotation explains it.
  auto c = simulate_stem4d(rotated_scan(30, 250));
  c.data = c.data.permute({1, 0, 2, 3}).contiguous();
  c.truth.reset();
  write_stem4d(path("t.h5"), c);
  const auto t = measure_shadow_shift(Stem4dFile(path("t.h5")));
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(t->mirrored);
  // In focus there is no shadow to follow: said, not guessed.
  write_stem4d(path("f.h5"), simulate_stem4d(rotated_scan(30, 0)));
  std::string why;
  const auto focused = measure_shadow_shift(Stem4dFile(path("f.h5")), &why);
  EXPECT_FALSE(focused.has_value()) << describe_shadow_shift(*focused, Stem4dFile(path("f.h5")).calibration());
  EXPECT_NE(why.find("focus"), std::string::npos) << why;
}

// Electron optics for a CXI file: the same data written as CXI (wavelength,
// distance and pixel giving the same reciprocal pixel p / (λ z)) load into the
// same problem, aberration probe included, as the 4D-STEM file.
TEST_F(Stem4dTest, BinningPieceByPieceEqualsBinningAtOnce) {
  // 576 patterns of 96 x 96 (20.3 MiB): more than one piece of
  // kFrameChunkBytes at full resolution, so the load bins piece by piece.
  Stem4dContent c = content(true);
  c.data = torch::floor(torch::rand({24, 24, 96, 96}) * 50);
  auto bad = torch::zeros({96, 96}, torch::kInt32);
  bad[40][41] = 1;
  bad[0][5] = 1;
  c.bad_pixels = bad;
  c.truth.reset();
  ASSERT_GT(576 * 96 * 96 * 4, kFrameChunkBytes);
  const std::string p = path("pieces.h5");
  write_stem4d(p, c);
  LoadOptions o;
  o.bin = 2;
  o.zero_order = std::make_pair(47.0, 49.0);
  auto problem = ScanProblem::from_file(p, o);
  std::vector<int64_t> every(576);
  std::iota(every.begin(), every.end(), 0);
  std::swap(every[3], every[500]);  // runs of any order
  Stem4dFile file(p);
  PatternReduction r(96, 96, 0, 0, 2, p, o.zero_order);
  const auto at_once = r.frames(file.read_frames(every), file.valid_mask());
  EXPECT_TRUE(torch::equal(problem.read_frames(every), at_once));
}

TEST_F(Stem4dTest, ElectronOpticsForCxiFiles) {
  auto stem = simulate_stem4d(rotated_scan(0, 250));
  write_stem4d(path("s.h5"), stem);
  const int64_t n = 12 * 12;
  const double lambda_m = stem.calibration.wavelength_angstrom * 1e-10;
  CxiContent x;
  x.geometry.wavelength_m = lambda_m;
  x.geometry.distance_m = 0.5;
  x.geometry.detector_pixel_y_m = x.geometry.detector_pixel_x_m = stem.calibration.dk_x * 1e10 * lambda_m * 0.5;
  x.frames = stem.data.reshape({n, 32, 32});
  const auto yx = Stem4dFile(path("s.h5")).positions_m();
  x.translation_m = torch::stack({yx.select(1, 1), yx.select(1, 0)}, 1);
  x.truth = stem.truth;
  write_cxi(path("x.cxi"), x);

  auto reference = ScanProblem::from_file(path("s.h5"));
  LoadOptions optics;
  optics.convergence_mrad = 20;
  optics.defocus_angstrom = 250;
  for (bool energy_given : {false, true}) {
    if (energy_given) optics.energy_kev = 300;  // else from the file's wavelength
    auto cxi = ScanProblem::from_file(path("x.cxi"), optics);
    EXPECT_NEAR(cxi.experiment.pixel_x_m() / reference.experiment.pixel_x_m(), 1.0, 1e-6);
    EXPECT_TRUE(torch::allclose(cxi.scan.positions_px, reference.scan.positions_px, 0, 1e-6));
    ASSERT_TRUE(cxi.probe_guess.has_value());
    EXPECT_LT(torch::abs(*cxi.probe_guess - *reference.probe_guess).max().item<double>(),
              1e-4 * torch::abs(*reference.probe_guess).max().item<double>());
  }
  // A beam energy that does not match the file's wavelength replaces it: the sample pixel follows.
  LoadOptions other = optics;
  other.energy_kev = 200;
  const auto at200 = ScanProblem::from_file(path("x.cxi"), other);
  EXPECT_NEAR(at200.experiment.pixel_x_m() / reference.experiment.pixel_x_m(),
              electron::wavelength_angstrom(200) / electron::wavelength_angstrom(300), 1e-9);
  LoadOptions no_aperture;
  no_aperture.defocus_angstrom = 100;
  expect_error<SettingsError>([&] { ScanProblem::from_file(path("x.cxi"), no_aperture); },
                              {path("x.cxi"), "no convergence semi-angle"});
  // Issue 14: electron optics on X-ray data (a 1.5 Å wavelength is 0.067 keV
  // electrons) is refused, naming the option and the way out.
  CxiContent xray = x;
  xray.geometry.wavelength_m = 1.5e-10;
  write_cxi(path("xray.cxi"), xray);
  LoadOptions aperture_only;
  aperture_only.convergence_mrad = 20;
  expect_error<SettingsError>([&] { ScanProblem::from_file(path("xray.cxi"), aperture_only); },
                              {path("xray.cxi"), "--convergence-mrad", "X-ray", "--energy-kev"});
  aperture_only.energy_kev = 300;  // the user says the beam is 300 keV electrons
  EXPECT_TRUE(ScanProblem::from_file(path("xray.cxi"), aperture_only).probe_guess.has_value());
  aperture_only.energy_kev = 1e-6;
  expect_error<SettingsError>([&] { ScanProblem::from_file(path("xray.cxi"), aperture_only); },
                              {"--energy-kev", "keV"});
  // 4D-STEM files carry their energy: a different one is refused, naming the key.
  expect_error<SettingsError>([&] { ScanProblem::from_file(path("s.h5"), other); }, {"--energy-kev", keys::kEnergy});
  EXPECT_NEAR(electron::energy_kev_from_wavelength(electron::wavelength_angstrom(300)), 300, 1e-9);
  EXPECT_NEAR(electron::energy_kev_from_wavelength(electron::wavelength_angstrom(0.5)), 0.5, 1e-12);
}

// ------------------------------------------------------------- the figure ---

// Issue 6, item 4: 300 kV, 20 mrad, 64 × 64 patterns, written in the layout,
// loaded by format detection, probe from the aberration model.
TEST_F(Stem4dTest, SimulatedDataSetReconstructs) {
  configure_threads(0);
  SimulationSettings s;
  s.frame = 64;
  s.electron_energy_kev = 300;
  s.convergence_mrad = 20;
  s.mrad_per_pixel = 0.8;     // disc radius 25 px, sample pixel 0.385 Å
  s.defocus_angstrom = 250;   // probe about 2 α Δf = 10 Å = 26 px across
  s.scan_y = s.scan_x = 12;
  s.step_angstrom = 2.0;      // 5.2 px: each point seen by about 25 positions
  s.photons = 1e6;            // electrons per pattern, Poisson noise
  const std::string p = path("stem.h5");
  write_stem4d(p, simulate_stem4d(s));
  auto problem = ScanProblem::from_file(p);
  ASSERT_TRUE(problem.probe_guess.has_value());
  ASSERT_TRUE(problem.truth.has_value());

  ReconstructionSettings rs;
  rs.iterations = 40;
  // The aberration probe is refined once the object has formed: refined from
  // the start, probe and object can trade a linear phase ramp, which the
  // issue's correlation counts as error.
  rs.probe_from = 20;
  rs.quiet = true;
  const auto t0 = std::chrono::steady_clock::now();
  Reconstruction rec(problem, rs);
  const double before = score_against_truth(problem, rec.object()).value().correlation;
  for (int i = 0; i < rs.iterations; ++i) rec.iterate();
  const auto a = score_against_truth(problem, rec.object()).value();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("4D-STEM 300 kV, 20 mrad, %lld patterns of 64 x 64, %d iterations: correlation %.4f (%.4f without ramp; "
              "start %.4f), %.1f s\n",
              static_cast<long long>(problem.scan.num_positions()), rs.iterations, a.correlation,
              a.correlation_without_ramp, before, seconds);
  EXPECT_LT(before, 0.9);  // the metric can fail: the flat start scores low
  EXPECT_GE(a.correlation, 0.98);
}
