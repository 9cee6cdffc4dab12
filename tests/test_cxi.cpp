// CXI reader and writer: round trips and one test per validation error.
// TESSERA_SHOW_MESSAGES=1 prints every error message checked (and a summary).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/cxi_file.h"
#include "data/cxi_writer.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "src/io/hdf5.h"

namespace fs = std::filesystem;
using namespace tessera;
namespace keys = tessera::cxi_keys;

namespace {

class CxiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("tessera_test_cxi_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A small valid data set: n frames of h × w, 8 keV, 2 m, 75 µm pixels.
  static CxiContent content(int64_t n = 6, int64_t h = 8, int64_t w = 10, bool extras = false) {
    torch::manual_seed(3);
    CxiContent c;
    c.geometry.energy_j = 8000 * kElectronVolt;
    c.geometry.distance_m = 2.0;
    c.geometry.detector_pixel_x_m = 75e-6;
    c.geometry.detector_pixel_y_m = 55e-6;
    c.frames = torch::floor(torch::rand({n, h, w}) * 100);
    c.translation_m = torch::zeros({n, 3}, torch::kDouble);
    for (int64_t i = 0; i < n; ++i) {
      c.translation_m[i][0] = 1e-7 * static_cast<double>(i % 3);   // x
      c.translation_m[i][1] = 2e-7 * static_cast<double>(i / 3);   // y
      c.translation_m[i][2] = 1e-3;                                  // z
    }
    if (extras) {
      auto mask = torch::zeros({h, w}, torch::kInt32);
      mask[0][0] = 1;
      mask[h - 1][2] = 8;
      c.mask = mask;
      c.probe_guess = torch::complex(torch::randn({2, h, w}), torch::randn({2, h, w}));
      GroundTruth t;
      t.object = torch::complex(torch::randn({1, 3 * h, 3 * w}), torch::randn({1, 3 * h, 3 * w}));
      t.probe = torch::complex(torch::randn({2, h, w}), torch::randn({2, h, w}));
      t.positions_px = torch::rand({n, 2}, torch::kDouble) * 10;
      c.truth = t;
    }
    return c;
  }

  // Writes a valid file, then lets edit change it with the HDF5 wrappers.
  std::string malformed(const std::string& name, const std::function<void(h5::File&)>& edit, const CxiContent& c = content()) {
    const std::string p = path(name);
    write_cxi(p, c);
    h5::File f = h5::File::open(p, h5::File::Mode::read_write);
    edit(f);
    f.close();
    return p;
  }

  // Replaces the dataset at key with data (and, for the frames, drops the link).
  static void replace(h5::File& f, const std::string& key, const torch::Tensor& data,
                      std::optional<h5::FileType> type = std::nullopt) {
    if (f.exists(key)) f.remove(key);
    h5::DatasetOptions o;
    o.file_type = type;
    f.create_dataset(key, data, o);
  }

  fs::path dir_;
};

// Expects a DataError whose message contains every one of the parts.
void expect_data_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected tessera::DataError";
  } catch (const DataError& e) {
    const std::string m = e.what();
    if (std::getenv("TESSERA_SHOW_MESSAGES")) std::cout << "  message: " << m << "\n";
    for (const auto& part : parts) EXPECT_NE(m.find(part), std::string::npos) << "message lacks \"" << part << "\": " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected tessera::DataError, got: " << e.what();
  }
}

void expect_open_error(const std::string& file, const std::vector<std::string>& parts) {
  ASSERT_FALSE(file.empty());
  std::vector<std::string> all = parts;
  all.push_back(file);
  expect_data_error([&] { CxiFile f(file); }, all);
}

bool contains(const std::vector<std::string>& v, const std::string& a, const std::string& b = "") {
  for (const auto& s : v)
    if (s.find(a) != std::string::npos && s.find(b) != std::string::npos) return true;
  return false;
}

}  // namespace

// ------------------------------------------------------------- round trip ---

TEST_F(CxiTest, RoundTripAllFields) {
  const CxiContent c = content(7, 8, 10, true);
  const std::string p = path("scan.cxi");
  write_cxi(p, c);
  CxiFile f(p);
  EXPECT_EQ(f.path(), p);
  EXPECT_EQ(f.num_frames(), 7);
  const auto& g = f.geometry();
  EXPECT_EQ(g.frame_h, 8);
  EXPECT_EQ(g.frame_w, 10);
  EXPECT_DOUBLE_EQ(g.distance_m, 2.0);
  EXPECT_DOUBLE_EQ(g.detector_pixel_x_m, 75e-6);
  EXPECT_DOUBLE_EQ(g.detector_pixel_y_m, 55e-6);
  EXPECT_DOUBLE_EQ(g.energy_j, 8000 * kElectronVolt);
  EXPECT_NEAR(g.wavelength_m, 1.23984198e-6 / 8000, 1e-18);
  EXPECT_EQ(f.data_type(), "float32");

  EXPECT_TRUE(torch::equal(f.translations_m(), c.translation_m));
  auto yx = f.positions_m();
  EXPECT_EQ(yx.sizes(), (torch::IntArrayRef{7, 2}));
  EXPECT_TRUE(torch::equal(yx.select(1, 0), c.translation_m.select(1, 1)));
  EXPECT_TRUE(torch::equal(yx.select(1, 1), c.translation_m.select(1, 0)));

  auto valid = f.valid_mask();
  EXPECT_EQ(valid.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(valid, *c.mask == 0));
  EXPECT_TRUE(f.has_mask());

  auto frames = f.read_frames(0, 7);
  EXPECT_EQ(frames.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(frames, c.frames * valid));  // excluded pixels read as 0

  auto range = f.read_frames(2, 5);
  EXPECT_TRUE(torch::equal(range, frames.narrow(0, 2, 3)));
  EXPECT_EQ(f.read_frames(3, 3).size(0), 0);
  const std::vector<int64_t> idx{5, 1, 2, 3, 0, 0, 6};
  auto picked = f.read_frames(idx);
  for (size_t i = 0; i < idx.size(); ++i)
    EXPECT_TRUE(torch::equal(picked[static_cast<int64_t>(i)], frames[idx[i]])) << "index " << i;

  auto probe = f.probe_guess();
  ASSERT_TRUE(probe.has_value());
  EXPECT_EQ(probe->scalar_type(), torch::kComplexFloat);
  EXPECT_TRUE(torch::equal(*probe, *c.probe_guess));
  EXPECT_EQ(f.probe_guess_key(), keys::kIllumination);

  auto truth = f.ground_truth();
  ASSERT_TRUE(truth.has_value());
  EXPECT_TRUE(torch::equal(truth->object, c.truth->object));
  EXPECT_TRUE(torch::equal(truth->probe, c.truth->probe));
  EXPECT_TRUE(torch::equal(truth->positions_px, c.truth->positions_px));

  EXPECT_TRUE(f.problems().empty()) << f.problems().front();
  const std::string s = f.summary();
  if (std::getenv("TESSERA_SHOW_MESSAGES")) std::cout << s;
  EXPECT_NE(s.find("7 × 8 × 10 float32"), std::string::npos) << s;
  EXPECT_NE(s.find("8 keV"), std::string::npos) << s;
  EXPECT_NE(s.find("2 of 80 pixels excluded"), std::string::npos) << s;
  EXPECT_NE(s.find("photons per frame"), std::string::npos) << s;

  // The layout other programs expect.
  h5::File raw = h5::File::open(p);
  EXPECT_EQ(raw.dataset(keys::kVersion).read_scalar(), 160);
  EXPECT_EQ(raw.dataset(keys::kData).read_string_attribute("axes"), "translation:y:x");
  EXPECT_TRUE(raw.is_dataset(keys::kDataLink));
  EXPECT_TRUE(raw.is_dataset(keys::kTranslationLink));
  EXPECT_TRUE(torch::equal(raw.dataset(keys::kDataLink).read(), c.frames));
  EXPECT_EQ(raw.dataset(keys::kMask).type().name, "uint32");
  EXPECT_EQ(raw.dataset(keys::kIllumination).type().name, "complex64");
  EXPECT_EQ(raw.dataset(keys::kTranslation).type().name, "float64");
  EXPECT_NEAR(raw.dataset(keys::kWavelength).read_scalar(), g.wavelength_m, 1e-20);
  EXPECT_DOUBLE_EQ(raw.dataset(keys::kEnergy).read_scalar(), g.energy_j);
}

TEST_F(CxiTest, SingleModeProbeAndNoExtras) {
  CxiContent c = content();
  c.probe_guess = torch::complex(torch::ones({8, 10}), torch::zeros({8, 10}));
  const std::string p = path("one_mode.cxi");
  write_cxi(p, c, CxiWriteOptions{4});
  CxiFile f(p);
  EXPECT_EQ(h5::File::open(p).dataset(keys::kIllumination).shape(), (std::vector<int64_t>{8, 10}));
  EXPECT_EQ(f.probe_guess()->sizes(), (torch::IntArrayRef{1, 8, 10}));
  EXPECT_FALSE(f.ground_truth().has_value());
  EXPECT_FALSE(f.has_mask());
  EXPECT_TRUE(f.valid_mask().all().item<bool>());
  EXPECT_TRUE(torch::equal(f.read_frames(0, 6), c.frames));  // gzip round trip
}

TEST_F(CxiTest, TwoColumnTranslationIsAccepted) {
  CxiContent c = content();
  const std::string p = malformed("xy.cxi", [&](h5::File& f) { replace(f, keys::kTranslation, c.translation_m.narrow(1, 0, 2).contiguous()); }, c);
  CxiFile f(p);
  EXPECT_TRUE(torch::equal(f.translations_m().narrow(1, 0, 2), c.translation_m.narrow(1, 0, 2)));
  EXPECT_TRUE(f.translations_m().select(1, 2).eq(0).all().item<bool>());
}

TEST_F(CxiTest, IntegerDataAreReadAsFloat) {
  CxiContent c = content();
  for (auto type : {h5::FileType::uint16, h5::FileType::uint32, h5::FileType::int32}) {
    const std::string p = malformed("int.cxi", [&](h5::File& f) { replace(f, keys::kData, c.frames.to(torch::kLong), type); }, c);
    CxiFile f(p);
    auto frames = f.read_frames(0, 6);
    EXPECT_EQ(frames.scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::equal(frames, c.frames));
    EXPECT_TRUE(torch::equal(f.read_frames({4, 0}), torch::stack({c.frames[4], c.frames[0]})));
  }
}

TEST_F(CxiTest, SaturationMarkersAreReported) {
  CxiContent c = content();
  auto counts = c.frames.to(torch::kLong);
  counts[2][4][4] = 65535;
  const std::string p = malformed("sat.cxi", [&](h5::File& f) { replace(f, keys::kData, counts, h5::FileType::uint16); }, c);
  CxiFile f(p);
  EXPECT_EQ(f.data_type(), "uint16");
  EXPECT_TRUE(contains(f.problems(), "1 of 6 frames contain the value 65535", "first: frame 2"));
}

TEST_F(CxiTest, WavelengthTakesPrecedenceOverEnergy) {
  const std::string p = malformed("both.cxi", [](h5::File& f) {
    f.remove(keys::kWavelength);
    f.write_scalar(keys::kWavelength, 1e-10);
  });
  CxiFile f(p);
  EXPECT_DOUBLE_EQ(f.geometry().wavelength_m, 1e-10);
  EXPECT_TRUE(contains(f.problems(), keys::kWavelength, "disagree")) << f.problems().size();
}

TEST_F(CxiTest, EnergyOnlyOrWavelengthOnly) {
  const std::string pe = malformed("energy.cxi", [](h5::File& f) { f.remove(keys::kWavelength); });
  CxiFile fe(pe);
  EXPECT_NEAR(fe.geometry().wavelength_m, photon_wavelength_m(8000 * kElectronVolt), 1e-20);
  const std::string pw = malformed("wavelength.cxi", [](h5::File& f) { f.remove(keys::kEnergy); });
  CxiFile fw(pw);
  EXPECT_NEAR(fw.geometry().wavelength_m, photon_wavelength_m(8000 * kElectronVolt), 1e-20);
  EXPECT_EQ(fw.geometry().energy_j, 0);
}

TEST_F(CxiTest, MaskedPixelsMayHoldGapMarkers) {
  CxiContent c = content(6, 8, 10, true);
  const std::string p = malformed("gaps.cxi", [&](h5::File& f) {
    auto frames = c.frames.clone();
    frames.select(2, 0).select(1, 0).fill_(-1);                         // pixel (0, 0): mask 1
    frames.select(1, 7).select(1, 2).fill_(std::numeric_limits<float>::quiet_NaN());  // pixel (7, 2): mask 8
    replace(f, keys::kData, frames);
  }, c);
  CxiFile f(p);
  auto frames = f.read_frames(0, 6);
  EXPECT_TRUE(torch::isfinite(frames).all().item<bool>());
  EXPECT_EQ(frames[3][0][0].item<float>(), 0.0f);
  EXPECT_TRUE(f.problems().empty());
}

TEST_F(CxiTest, ProblemsScanAllFrames) {
  const std::string p = malformed("bad_frames.cxi", [](h5::File& f) {
    auto d = f.dataset(keys::kData);
    d.write_rows(3, torch::full({1, 8, 10}, std::numeric_limits<float>::quiet_NaN()));
    d.write_rows(5, torch::full({1, 8, 10}, std::numeric_limits<float>::quiet_NaN()));
    d.write_rows(1, torch::full({1, 8, 10}, -2.0f));
    d.write_rows(4, torch::zeros({1, 8, 10}));
  });
  CxiFile f(p);
  auto problems = f.problems();
  EXPECT_TRUE(contains(problems, "2 of 6 frames contain NaN", "first: frame 3"));
  EXPECT_TRUE(contains(problems, "1 of 6 frames contain negative", "first: frame 1"));
  EXPECT_TRUE(contains(problems, "are entirely zero", "frame 4"));
  if (std::getenv("TESSERA_SHOW_MESSAGES"))
    for (const auto& m : problems) std::cout << "  problem: " << m << "\n";
  EXPECT_NO_THROW(f.summary());
}

TEST_F(CxiTest, WriterIsAtomicAndValidatesContent) {
  const std::string p = path("keep.cxi");
  write_cxi(p, content());
  const auto size = fs::file_size(p);
  CxiContent bad = content();
  bad.frames[2][1][1] = std::numeric_limits<float>::quiet_NaN();
  expect_data_error([&] { write_cxi(p, bad); }, {p, "content.frames", "frame 2", "NaN"});
  CxiContent few = content();
  few.translation_m = few.translation_m.narrow(0, 0, 5);
  expect_data_error([&] { write_cxi(p, few); }, {"content.translation_m has 5 positions", "6 frames"});
  CxiContent bool_mask = content();
  bool_mask.mask = torch::ones({8, 10}, torch::kBool);
  expect_data_error([&] { write_cxi(p, bool_mask); }, {"content.mask", "integer"});
  CxiContent mm = content();
  mm.geometry.distance_m = 2000;  // millimetres: caught by the reader check before the rename
  expect_data_error([&] { write_cxi(p, mm); }, {p, keys::kDistance, "millimetres"});
  EXPECT_EQ(fs::file_size(p), size);
  EXPECT_NO_THROW(CxiFile{p});
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) entries += e.is_regular_file();
  EXPECT_EQ(entries, 1) << "temporary files left behind";
}

TEST_F(CxiTest, WriteAtomicallyRemovesTemporaryOnException) {
  const std::string p = path("x.bin");
  std::string tmp;
  EXPECT_THROW(write_atomically(p, [&](const std::string& t) {
                 tmp = t;
                 std::ofstream(t) << "partial";
                 throw std::runtime_error("boom");
               }),
               std::runtime_error);
  EXPECT_FALSE(tmp.empty());
  EXPECT_EQ(fs::path(tmp).parent_path(), fs::path(p).parent_path());
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(p));
  write_atomically(p, [](const std::string& t) { std::ofstream(t) << "done"; });
  std::ifstream in(p);
  std::string text;
  in >> text;
  EXPECT_EQ(text, "done");
}

TEST_F(CxiTest, WriteAtomicallyRemovesTemporaryOnSigterm) {
  // A job killed (SIGTERM) in the middle of a checkpoint leaves no temporary file.
  const std::string p = path("killed.bin");
  const std::string tmp_record = path("tmp_name.txt");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    write_atomically(p, [&](const std::string& t) {
      std::ofstream(tmp_record) << t;
      std::ofstream(t) << "partial";
      ::raise(SIGTERM);
    });
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
  std::string tmp;
  std::ifstream(tmp_record) >> tmp;
  ASSERT_FALSE(tmp.empty());
  EXPECT_FALSE(fs::exists(tmp)) << tmp << " was left behind";
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(CxiTest, Hdf5WrappersRoundTripDtypes) {
  const std::string p = path("types.h5");
  {
    h5::File f = h5::File::create(p);
    f.create_dataset("a/f32", torch::arange(6, torch::kFloat).reshape({2, 3}));
    f.create_dataset("a/f64", torch::arange(6, torch::kDouble));
    f.create_dataset("a/i64", torch::arange(-3, 3, torch::kLong));
    f.create_dataset("a/u8", torch::arange(6, torch::kByte));
    f.create_dataset("a/b", torch::tensor({true, false, true}));
    f.create_dataset("a/c128", torch::complex(torch::ones({2}, torch::kDouble), torch::full({2}, -2.0, torch::kDouble)));
    f.write_string("a/s", "hello");
    f.create_soft_link("a/link", "/a/f32");
    f.create_soft_link("a/dangling", "/nowhere");
    f.write_attribute("program", "tessera");
    f.write_scalar("a/n", 3);
    f.dataset("a/f32").write_attribute("scale", 2.5);
    f.dataset("a/f32").write_attribute("count", 7);
    f.dataset("a/f32").write_attribute("scale", 3.5);  // replaces
    f.close();
  }
  h5::File f = h5::File::open(p);
  EXPECT_TRUE(torch::equal(f.dataset("a/f32").read(), torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(f.dataset("/a/f64").read_rows(2, 4, torch::kFloat), torch::tensor({2.0f, 3.0f})));
  EXPECT_TRUE(torch::equal(f.dataset("a/i64").read(), torch::arange(-3, 3, torch::kLong)));
  EXPECT_EQ(f.dataset("a/u8").type().name, "uint8");
  EXPECT_EQ(f.dataset("a/b").type().name, "bool");
  EXPECT_TRUE(torch::equal(f.dataset("a/b").read(), torch::tensor({true, false, true})));
  EXPECT_TRUE(torch::equal(f.dataset("a/b").read(torch::kFloat), torch::tensor({1.0f, 0.0f, 1.0f})));
  EXPECT_EQ(f.dataset("a/c128").type().name, "complex128");
  auto c = f.dataset("a/c128").read(torch::kComplexFloat);
  EXPECT_EQ(c.scalar_type(), torch::kComplexFloat);
  EXPECT_EQ(torch::imag(c)[1].item<float>(), -2.0f);
  EXPECT_TRUE(torch::equal(torch::real(f.dataset("a/f32").read(torch::kComplexFloat)), f.dataset("a/f32").read()));
  EXPECT_EQ(f.dataset("a/s").read_string(), "hello");
  EXPECT_TRUE(f.has_attribute("program"));
  EXPECT_EQ(f.read_string_attribute("program"), "tessera");
  EXPECT_EQ(f.dataset("a/n").read_scalar(), 3);
  EXPECT_EQ(f.dataset("a/n").type().name, "int64");
  EXPECT_EQ(f.dataset("a/f32").read_double_attribute("scale"), 3.5);
  EXPECT_EQ(f.dataset("a/f32").read_double_attribute("count"), 7);
  EXPECT_EQ(f.group("a").children(), (std::vector<std::string>{"b", "c128", "dangling", "f32", "f64", "i64", "link", "n", "s", "u8"}));
  expect_data_error([&] { f.read_string_attribute("nothing"); }, {p, "attribute 'nothing'", "is missing"});
  EXPECT_TRUE(f.is_dataset("a/link"));
  EXPECT_TRUE(f.is_group("a"));
  EXPECT_FALSE(f.exists("a/dangling"));
  EXPECT_TRUE(f.is_dangling_link("a/dangling"));
  EXPECT_FALSE(f.exists("x/y/z"));
  expect_data_error([&] { f.dataset("a/dangling"); }, {p, "/a/dangling", "/nowhere", "does not exist"});
  expect_data_error([&] { f.dataset("a/missing"); }, {p, "/a/missing", "is missing"});
  expect_data_error([&] { f.dataset("a/c128").read(torch::kFloat); }, {"/a/c128", "complex"});
  expect_data_error([&] { f.dataset("a/f64").read_rows(4, 9, torch::kFloat); }, {"/a/f64", "rows [4, 9)"});
}

// Open files, groups, datasets, attributes and named types, in all files.
ssize_t open_ids() { return H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL); }

TEST_F(CxiTest, NoHandleLeaks) {
  const std::string p = path("leak.cxi");
  write_cxi(p, content(6, 8, 10, true));  // first use registers HDF5's own ids
  const auto before = open_ids();
  for (int i = 0; i < 2; ++i) {
    write_cxi(p, content(6, 8, 10, true));
    CxiFile f(p);
    EXPECT_NE(open_ids(), before);  // the check can see open handles
    f.read_frames(0, 6);
    f.read_frames({3, 1, 2});
    f.probe_guess();
    f.ground_truth();
    f.problems();
    f.summary();
    EXPECT_THROW(CxiFile(malformed("bad.cxi", [](h5::File& g) { g.remove(keys::kDistance); })), DataError);
    CxiContent bad = content();
    bad.geometry.distance_m = 5000;
    EXPECT_THROW(write_cxi(p, bad), DataError);
  }
  EXPECT_EQ(open_ids(), before);
  EXPECT_EQ(before, 0);
}

TEST_F(CxiTest, ConcurrentReads) {
  const CxiContent c = content(32, 16, 16);
  const std::string p = path("threads.cxi");
  write_cxi(p, c);
  const CxiFile f(p);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 50; ++k) {
        const int64_t b = (t * 7 + k) % 30;
        if (!torch::equal(f.read_frames(b, b + 2), c.frames.narrow(0, b, 2))) ++mismatches;
        if (!torch::equal(f.read_frames({b + 1, b}), torch::stack({c.frames[b + 1], c.frames[b]}))) ++mismatches;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ------------------------------------------------------- validation errors ---

TEST_F(CxiTest, MissingFile) { expect_open_error(path("nothing.cxi"), {"not found"}); }

TEST_F(CxiTest, TextFileIsNotHdf5) {
  const std::string p = path("notes.cxi");
  std::ofstream(p) << "this is a text file, not a data set\n";
  expect_open_error(p, {"is not an HDF5 file"});
}

TEST_F(CxiTest, TruncatedFile) {
  const std::string p = path("cut.cxi");
  write_cxi(p, content(40, 16, 16));
  fs::resize_file(p, fs::file_size(p) / 2);
  expect_open_error(p, {"truncated"});
}

TEST_F(CxiTest, HdfFileThatIsNotCxi) {
  const std::string p = path("other.h5");
  {
    h5::File f = h5::File::create(p);
    f.create_dataset("images", torch::zeros({2, 2}));
    f.close();
  }
  expect_open_error(p, {keys::kData, "is missing", "not a CXI file", "images"});
}

TEST_F(CxiTest, MissingData) {
  // Without the data the link /entry_1/data_1/data dangles.
  expect_open_error(malformed("a.cxi", [](h5::File& f) { f.remove(keys::kData); }),
                    {keys::kDataLink, keys::kData, "does not exist"});
  expect_open_error(malformed("b.cxi", [](h5::File& f) {
                      f.remove(keys::kData);
                      f.remove(keys::kDataLink);
                    }),
                    {keys::kData, "is missing", "diffraction frames"});
}

TEST_F(CxiTest, DataFoundThroughLinkOnly) {
  CxiContent c = content();
  const std::string p = malformed("link.cxi", [&](h5::File& f) {
    f.remove(keys::kDataLink);
    f.create_dataset(keys::kDataLink, f.dataset(keys::kData).read());
    f.remove(keys::kData);
  }, c);
  CxiFile f(p);
  EXPECT_EQ(f.data_key(), keys::kDataLink);
  EXPECT_TRUE(torch::equal(f.read_frames(0, 6), c.frames));
}

TEST_F(CxiTest, MissingTranslation) {
  expect_open_error(malformed("t.cxi", [](h5::File& f) {
                      f.remove(keys::kTranslation);
                      f.remove(keys::kTranslationLink);
                    }),
                    {keys::kTranslation, "is missing", "scan positions"});
}

TEST_F(CxiTest, MissingDistance) {
  expect_open_error(malformed("d.cxi", [](h5::File& f) { f.remove(keys::kDistance); }),
                    {keys::kDistance, "is missing", "distance"});
}

TEST_F(CxiTest, MissingPixelSize) {
  expect_open_error(malformed("x.cxi", [](h5::File& f) { f.remove(keys::kXPixelSize); }),
                    {keys::kXPixelSize, "is missing", "pixel size"});
  expect_open_error(malformed("y.cxi", [](h5::File& f) { f.remove(keys::kYPixelSize); }),
                    {keys::kYPixelSize, "is missing", "pixel size"});
}

TEST_F(CxiTest, MissingEnergyAndWavelength) {
  expect_open_error(malformed("e.cxi", [](h5::File& f) {
                      f.remove(keys::kEnergy);
                      f.remove(keys::kWavelength);
                    }),
                    {keys::kEnergy, keys::kWavelength, "is missing", "required"});
}

TEST_F(CxiTest, DataWrongRank) {
  expect_open_error(malformed("r2.cxi", [](h5::File& f) { replace(f, keys::kData, torch::zeros({48, 10})); }),
                    {keys::kData, "48 × 10", "expected 3 dimensions"});
  expect_open_error(malformed("r4.cxi", [](h5::File& f) { replace(f, keys::kData, torch::zeros({2, 3, 8, 10})); }),
                    {keys::kData, "4D-STEM"});
}

TEST_F(CxiTest, DataComplex) {
  expect_open_error(malformed("c.cxi", [](h5::File& f) {
                      replace(f, keys::kData, torch::zeros({6, 8, 10}, torch::kComplexFloat));
                    }),
                    {keys::kData, "complex"});
}

TEST_F(CxiTest, EmptyData) {
  expect_open_error(malformed("n0.cxi", [](h5::File& f) { replace(f, keys::kData, torch::zeros({0, 8, 10})); }),
                    {keys::kData, "no frames"});
  expect_open_error(malformed("h0.cxi", [](h5::File& f) { replace(f, keys::kData, torch::zeros({6, 0, 10})); }),
                    {keys::kData, "no pixels"});
}

TEST_F(CxiTest, PositionsCountMismatch) {
  // The example from the manual: 399 positions for 400 frames.
  const CxiContent c = content(400, 4, 4);
  const std::string p = malformed("scan.cxi", [&](h5::File& f) {
    replace(f, keys::kTranslation, c.translation_m.narrow(0, 0, 399).contiguous());
  }, c);
  expect_open_error(p, {p + ": /entry_1/sample_1/geometry_1/translation has 399 positions but "
                            "/entry_1/instrument_1/detector_1/data has 400 frames"});
}

TEST_F(CxiTest, TranslationWrongShape) {
  expect_open_error(malformed("t4.cxi", [](h5::File& f) { replace(f, keys::kTranslation, torch::zeros({6, 4}, torch::kDouble)); }),
                    {keys::kTranslation, "4 columns"});
  expect_open_error(malformed("tT.cxi", [](h5::File& f) { replace(f, keys::kTranslation, torch::zeros({3, 6}, torch::kDouble)); }),
                    {keys::kTranslation, "transposed"});
  expect_open_error(malformed("t3.cxi", [](h5::File& f) { replace(f, keys::kTranslation, torch::zeros({6, 3, 1}, torch::kDouble)); }),
                    {keys::kTranslation, "expected (frames, 3)"});
}

TEST_F(CxiTest, HugeProbeGuessIsRefusedBeforeItIsRead) {
  expect_open_error(malformed("hugeprobe.cxi", [](h5::File& f) {
    // 2^24 modes of 8 x 10 declared, none written: chunked storage is
    // allocated lazily, so the file stays small while reading it would take 5 GiB.
    if (f.exists(keys::kProbe)) f.remove(keys::kProbe);
    const hsize_t dims[3] = {hsize_t{1} << 24, 8, 10}, chunk[3] = {1, 8, 10};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(create, 3, chunk);
    const hid_t links = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(links, 1);
    const hid_t d = H5Dcreate2(f.id(), keys::kProbe, H5T_NATIVE_FLOAT, space, links, create, H5P_DEFAULT);
    ASSERT_GE(d, 0);
    H5Dclose(d);
    H5Pclose(links);
    H5Pclose(create);
    H5Sclose(space);
  }), {keys::kProbe, "16777216 probe modes", "GiB"});
}

// Issue 14: a scalar stored with a null dataspace (h5py's shape=None) holds
// no value; it was read from uninitialised memory.
TEST_F(CxiTest, NullDataspaceScalarIsAnErrorNamingIt) {
  expect_open_error(malformed("nulldistance.cxi", [](h5::File& f) {
    f.remove(keys::kDistance);
    const hid_t space = H5Screate(H5S_NULL);
    const hid_t d = H5Dcreate2(f.id(), keys::kDistance, H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(d, 0);
    H5Dclose(d);
    H5Sclose(space);
  }), {keys::kDistance, "is empty", "a single number"});
}

TEST_F(CxiTest, TranslationNotFinite) {
  CxiContent c = content();
  auto t = c.translation_m.clone();
  t[4][1] = std::numeric_limits<double>::quiet_NaN();
  t[5][0] = std::numeric_limits<double>::infinity();
  expect_open_error(malformed("tn.cxi", [&](h5::File& f) { replace(f, keys::kTranslation, t); }, c),
                    {keys::kTranslation, "position 4", "not a finite number", "2 of 6"});
}

TEST_F(CxiTest, ScanExtentTooLarge) {
  // Positions in micrometres instead of metres: the windows spread over millions of pixels.
  CxiContent c = content();
  expect_open_error(malformed("um.cxi", [&](h5::File& f) { replace(f, keys::kTranslation, c.translation_m * 1e6); }, c),
                    {keys::kTranslation, "pixels of the sample plane", "metres"});
}

TEST_F(CxiTest, NonPositiveDistance) {
  expect_open_error(malformed("z0.cxi", [](h5::File& f) {
                      f.remove(keys::kDistance);
                      f.write_scalar(keys::kDistance, 0.0);
                    }),
                    {keys::kDistance, "is 0", "must be positive"});
  expect_open_error(malformed("zn.cxi", [](h5::File& f) {
                      f.remove(keys::kDistance);
                      f.write_scalar(keys::kDistance, std::numeric_limits<double>::quiet_NaN());
                    }),
                    {keys::kDistance, "NaN"});
  expect_open_error(malformed("zmm.cxi", [](h5::File& f) {
                      f.remove(keys::kDistance);
                      f.write_scalar(keys::kDistance, 2000.0);
                    }),
                    {keys::kDistance, "millimetres"});
}

TEST_F(CxiTest, NegativeEnergy) {
  expect_open_error(malformed("en.cxi", [](h5::File& f) {
                      f.remove(keys::kWavelength);
                      f.remove(keys::kEnergy);
                      f.write_scalar(keys::kEnergy, -1.28e-15);
                    }),
                    {keys::kEnergy, "is -1.28e-15", "must be positive", "joules"});
}

TEST_F(CxiTest, EnergyInElectronVolts) {
  expect_open_error(malformed("ev.cxi", [](h5::File& f) {
                      f.remove(keys::kWavelength);
                      f.remove(keys::kEnergy);
                      f.write_scalar(keys::kEnergy, 8000.0);
                    }),
                    {keys::kEnergy, "joules", "if this is 8000 eV, store 1.28174e-15 J"});
  expect_open_error(malformed("kev.cxi", [](h5::File& f) {
                      f.remove(keys::kWavelength);
                      f.remove(keys::kEnergy);
                      f.write_scalar(keys::kEnergy, 8.0);
                    }),
                    {keys::kEnergy, "joules", "if this is 8 keV, store 1.28174e-15 J"});
  expect_open_error(malformed("ring.cxi", [](h5::File& f) {
                      f.remove(keys::kWavelength);
                      f.remove(keys::kEnergy);
                      f.write_scalar(keys::kEnergy, 6e9 * kElectronVolt);  // 6 GeV
                    }),
                    {keys::kEnergy, "storage-ring"});
}

TEST_F(CxiTest, BadWavelength) {
  expect_open_error(malformed("wa.cxi", [](h5::File& f) {
                      f.remove(keys::kWavelength);
                      f.write_scalar(keys::kWavelength, 1.55);
                    }),
                    {keys::kWavelength, "metres", "Å"});
  expect_open_error(malformed("wn.cxi", [](h5::File& f) {
                      f.remove(keys::kWavelength);
                      f.write_scalar(keys::kWavelength, -1e-10);
                    }),
                    {keys::kWavelength, "must be positive"});
}

TEST_F(CxiTest, NonPositivePixelSize) {
  expect_open_error(malformed("px.cxi", [](h5::File& f) {
                      f.remove(keys::kXPixelSize);
                      f.write_scalar(keys::kXPixelSize, -75e-6);
                    }),
                    {keys::kXPixelSize, "must be positive"});
  expect_open_error(malformed("pum.cxi", [](h5::File& f) {
                      f.remove(keys::kYPixelSize);
                      f.write_scalar(keys::kYPixelSize, 75.0);
                    }),
                    {keys::kYPixelSize, "micrometres"});
}

TEST_F(CxiTest, MaskWrongShapeOrType) {
  expect_open_error(malformed("m1.cxi", [](h5::File& f) { replace(f, keys::kMask, torch::zeros({8, 9}, torch::kInt32)); }),
                    {keys::kMask, "8 × 9", "8 × 10"});
  expect_open_error(malformed("m2.cxi", [](h5::File& f) { replace(f, keys::kMask, torch::zeros({10, 8}, torch::kInt32)); }),
                    {keys::kMask, "transposed"});
  expect_open_error(malformed("m3.cxi", [](h5::File& f) { replace(f, keys::kMask, torch::zeros({8, 10}, torch::kFloat)); }),
                    {keys::kMask, "float32", "integer"});
  expect_open_error(malformed("m4.cxi", [](h5::File& f) { replace(f, keys::kMask, torch::ones({8, 10}, torch::kInt32)); }),
                    {keys::kMask, "every pixel"});
}

TEST_F(CxiTest, ProbeGuessWrongShape) {
  expect_open_error(malformed("pg.cxi", [](h5::File& f) {
                      replace(f, keys::kIllumination, torch::zeros({16, 16}, torch::kComplexFloat));
                    }),
                    {keys::kIllumination, "16 × 16", "8 × 10"});
}

size_t passthrough_filter(unsigned, size_t, const unsigned[], size_t nbytes, size_t*, void**) { return nbytes; }

TEST_F(CxiTest, CompressionFilterNotAvailable) {
  // Frames "compressed" with bitshuffle (filter 32008): registered here only
  // while writing, as if written at a beamline whose plugin is not installed here.
  const H5Z_class2_t fake = {H5Z_CLASS_T_VERS, static_cast<H5Z_filter_t>(32008), 1, 1, "bitshuffle", nullptr, nullptr,
                             passthrough_filter};
  ASSERT_GE(H5Zregister(&fake), 0);
  const std::string p = malformed("bshuf.cxi", [](h5::File& f) {
    f.remove(keys::kData);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t dims[3] = {6, 8, 10}, chunk[3] = {1, 8, 10};
    H5Pset_chunk(dcpl, 3, chunk);
    H5Pset_filter(dcpl, 32008, H5Z_FLAG_MANDATORY, 0, nullptr);
    hid_t space = H5Screate_simple(3, dims, nullptr);
    hid_t d = H5Dcreate2(f.id(), keys::kData, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    std::vector<float> ones(6 * 8 * 10, 1.0f);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ones.data());
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
  });
  EXPECT_NO_THROW(CxiFile(p).read_frames(0, 6));  // readable while the filter is there
  ASSERT_GE(H5Zunregister(32008), 0);
  expect_open_error(p, {keys::kData, "bitshuffle (filter 32008)", "HDF5_PLUGIN_PATH"});
}

TEST_F(CxiTest, NanFrame) {
  const std::string p = malformed("nan.cxi", [](h5::File& f) {
    auto frame = torch::ones({1, 8, 10});
    frame[0][2][3] = std::numeric_limits<float>::quiet_NaN();
    f.dataset(keys::kData).write_rows(3, frame);
  });
  CxiFile f(p);  // frame values are checked when read
  EXPECT_NO_THROW(f.read_frames(0, 3));
  expect_data_error([&] { f.read_frames(0, 6); }, {p, keys::kData, "frame 3", "NaN in 1 pixel"});
  expect_data_error([&] { f.read_frames(std::vector<int64_t>{5, 3}); }, {p, keys::kData, "frame 3", "NaN"});
  EXPECT_TRUE(contains(f.problems(), "1 of 6 frames contain NaN", "first: frame 3"));
}

TEST_F(CxiTest, InfiniteFrame) {
  const std::string p = malformed("inf.cxi", [](h5::File& f) {
    f.dataset(keys::kData).write_rows(1, torch::full({1, 8, 10}, std::numeric_limits<float>::infinity()));
  });
  expect_data_error([&] { CxiFile(p).read_frames(0, 6); }, {keys::kData, "frame 1", "infinite values in 80 pixels"});
}

TEST_F(CxiTest, NegativeFrame) {
  const std::string p = malformed("neg.cxi", [](h5::File& f) {
    auto frames = torch::ones({2, 8, 10});
    frames[1][0][0] = -5.0f;
    f.dataset(keys::kData).write_rows(1, frames);
  });
  expect_data_error([&] { CxiFile(p).read_frames(0, 6); }, {keys::kData, "frame 2", "negative", "-5"});
}

TEST_F(CxiTest, FrameIndexOutOfRange) {
  const std::string p = path("ok.cxi");
  write_cxi(p, content());
  CxiFile f(p);
  expect_data_error([&] { f.read_frames(4, 7); }, {keys::kData, "[4, 7)", "6 frames"});
  expect_data_error([&] { f.read_frames(std::vector<int64_t>{0, 6}); }, {keys::kData, "frame 6", "6 frames"});
}

TEST_F(CxiTest, GroundTruthIncomplete) {
  const std::string p = malformed("gt.cxi", [](h5::File& f) { f.remove(keys::kTruthProbe); }, content(6, 8, 10, true));
  expect_open_error(p, {keys::kTruthProbe, "is missing"});
}
