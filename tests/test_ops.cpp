// Tests of tessera::extract_patches / tessera::overlap_add (src/ops/patches.h):
// forward against naive loops, adjointness, gradients (finite differences),
// determinism, bad-input errors, and CUDA against CPU where a GPU exists.
#include <gtest/gtest.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "src/error.h"
#include "src/ops/patches.h"
#include "tests/error_text.h"
#include "tests/gradcheck.h"
#include "tests/require_cuda.h"

namespace {

using tessera::ops::extract_patches;
using tessera::ops::overlap_add;
using cd = c10::complex<double>;

const std::vector<torch::ScalarType> kAllDtypes = {torch::kFloat, torch::kDouble,
                                                   torch::kComplexFloat, torch::kComplexDouble};

torch::ScalarType real_of(torch::ScalarType t) { return c10::toRealValueType(t); }

torch::Tensor random_data(torch::IntArrayRef shape, torch::ScalarType dtype, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::TensorOptions().dtype(dtype));
}

// Positions with floor(y) in [0, H - h - 1] (the stencil reads h + 1 rows), and
// fractional parts in [0.2, 0.8] (away from the kinks of bilinear
// interpolation) or zero.
torch::Tensor random_positions(int64_t B, int64_t H, int64_t W, int64_t h, int64_t w,
                               bool fractional, torch::ScalarType dtype, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto y = torch::randint(0, H - h, {B, 1}, gen, opts);
  auto x = torch::randint(0, W - w, {B, 1}, gen, opts);
  auto pos = torch::cat({y, x}, 1);
  if (fractional) pos = pos + 0.2 + 0.6 * torch::rand({B, 2}, gen, opts);
  return pos.to(dtype);
}

double tolerance(torch::ScalarType t) {
  return real_of(t) == torch::kFloat ? 2e-5 : 1e-12;
}

// Naive references in complex128 (real inputs become complex with zero imaginary part).
torch::Tensor reference_extract(const torch::Tensor& object, const torch::Tensor& positions,
                                int64_t h, int64_t w) {
  const auto obj = object.to(torch::kComplexDouble).contiguous();
  const auto pos = positions.to(torch::kDouble).contiguous();
  const int64_t B = pos.size(0), L = obj.size(0);
  auto out = torch::zeros({B, L, h, w}, torch::kComplexDouble);
  auto o = obj.accessor<cd, 3>();
  auto p = pos.accessor<double, 2>();
  auto r = out.accessor<cd, 4>();
  for (int64_t b = 0; b < B; ++b) {
    const double y0 = std::floor(p[b][0]), x0 = std::floor(p[b][1]);
    const double fy = p[b][0] - y0, fx = p[b][1] - x0;
    const auto Y = static_cast<int64_t>(y0), X = static_cast<int64_t>(x0);
    for (int64_t l = 0; l < L; ++l)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j)
          r[b][l][i][j] = (1 - fy) * (1 - fx) * o[l][Y + i][X + j] +
                          (1 - fy) * fx * o[l][Y + i][X + j + 1] +
                          fy * (1 - fx) * o[l][Y + i + 1][X + j] +
                          fy * fx * o[l][Y + i + 1][X + j + 1];
  }
  return out;
}

torch::Tensor reference_overlap_add(const torch::Tensor& patches, const torch::Tensor& positions,
                                    int64_t H, int64_t W) {
  const auto pat = patches.to(torch::kComplexDouble).contiguous();
  const auto pos = positions.to(torch::kDouble).contiguous();
  const int64_t B = pat.size(0), L = pat.size(1), h = pat.size(2), w = pat.size(3);
  auto out = torch::zeros({L, H, W}, torch::kComplexDouble);
  auto q = pat.accessor<cd, 4>();
  auto p = pos.accessor<double, 2>();
  auto o = out.accessor<cd, 3>();
  for (int64_t b = 0; b < B; ++b) {
    const double y0 = std::floor(p[b][0]), x0 = std::floor(p[b][1]);
    const double fy = p[b][0] - y0, fx = p[b][1] - x0;
    const auto Y = static_cast<int64_t>(y0), X = static_cast<int64_t>(x0);
    for (int64_t l = 0; l < L; ++l)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const cd v = q[b][l][i][j];
          o[l][Y + i][X + j] += (1 - fy) * (1 - fx) * v;
          o[l][Y + i][X + j + 1] += (1 - fy) * fx * v;
          o[l][Y + i + 1][X + j] += fy * (1 - fx) * v;
          o[l][Y + i + 1][X + j + 1] += fy * fx * v;
        }
  }
  return out;
}

// max |a - b| / max(1, max |b|), both compared in complex128.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const auto A = a.to(torch::kCPU).to(torch::kComplexDouble);
  const auto Bt = b.to(torch::kCPU).to(torch::kComplexDouble);
  const double scale = std::max(1.0, Bt.abs().max().item<double>());
  return (A - Bt).abs().max().item<double>() / scale;
}

// Fill the allocator's free list with a NaN block of `numel` elements of dtype
// on device, so that an output allocated next that a kernel forgets to write
// shows NaN instead of a lucky zero. Reliable with the CUDA caching allocator
// (the next allocation of that size reuses the block: create the op's inputs
// first); best effort on the CPU.
void poison_next_allocation(int64_t numel, torch::ScalarType dtype, torch::Device device) {
  auto t = torch::empty({numel}, torch::TensorOptions().dtype(dtype).device(device));
  t.fill_(std::numeric_limits<double>::quiet_NaN());
}

std::string dtype_name(torch::ScalarType t) { return c10::toString(t); }

// ----------------------------------------------------------------------------
// Forward

TEST(ExtractPatches, MatchesReferenceAllDtypes) {
  const int64_t L = 2, H = 23, W = 19, h = 6, w = 9, B = 7;
  for (auto dtype : kAllDtypes) {
    for (bool fractional : {false, true}) {
      SCOPED_TRACE(dtype_name(dtype) + (fractional ? " fractional" : " integer"));
      const auto obj = random_data({L, H, W}, dtype, 1);
      const auto pos = random_positions(B, H, W, h, w, fractional, real_of(dtype), 2);
      poison_next_allocation(B * L * h * w, dtype, torch::kCPU);
      const auto out = extract_patches(obj, pos, h, w);
      EXPECT_EQ(out.sizes(), (std::vector<int64_t>{B, L, h, w}));
      EXPECT_EQ(out.scalar_type(), dtype);
      EXPECT_LE(relative_error(out, reference_extract(obj, pos, h, w)), tolerance(dtype));
    }
  }
}

TEST(ExtractPatches, IntegerPositionsAreExactSlices) {
  const auto obj = random_data({3, 20, 20}, torch::kComplexFloat, 3);
  const auto pos = torch::tensor({{0.f, 0.f}, {5.f, 11.f}, {13.f, 2.f}});
  const auto out = extract_patches(obj, pos, 6, 7);
  for (int64_t b = 0; b < 3; ++b) {
    const auto y = pos[b][0].item<int64_t>(), x = pos[b][1].item<int64_t>();
    EXPECT_TRUE(torch::equal(out[b], obj.slice(1, y, y + 6).slice(2, x, x + 7))) << "window " << b;
  }
}

TEST(ExtractPatches, NonContiguousInputs) {
  // object as a transposed view, positions as a strided column slice.
  const auto base = random_data({2, 21, 22}, torch::kComplexDouble, 4);
  const auto obj = base.transpose(1, 2);  // (2, 22, 21), not contiguous
  const auto wide = random_positions(5, 22, 21, 5, 4, true, torch::kDouble, 5);
  const auto pos = torch::stack({wide.select(1, 0), torch::zeros({5}, torch::kDouble),
                                 wide.select(1, 1)}, 1).slice(1, 0, 3, 2);
  ASSERT_FALSE(obj.is_contiguous());
  ASSERT_FALSE(pos.is_contiguous());
  EXPECT_LE(relative_error(extract_patches(obj, pos, 5, 4), reference_extract(obj, pos, 5, 4)),
            1e-12);
}

TEST(ExtractPatches, EmptyBatch) {
  const auto obj = random_data({2, 10, 10}, torch::kComplexFloat, 6);
  const auto out = extract_patches(obj, torch::zeros({0, 2}), 4, 4);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{0, 2, 4, 4}));
  const auto back = overlap_add(out, torch::zeros({0, 2}), 10, 10);
  EXPECT_EQ(back.sizes(), (std::vector<int64_t>{2, 10, 10}));
  EXPECT_EQ(back.abs().max().item<float>(), 0.f);
}

TEST(OverlapAdd, MatchesReferenceAllDtypes) {
  // Many overlapping windows (B = 40 on a 24 x 26 object) and windows at the edges.
  const int64_t L = 2, H = 24, W = 26, h = 7, w = 5, B = 40;
  for (auto dtype : kAllDtypes) {
    for (bool fractional : {false, true}) {
      SCOPED_TRACE(dtype_name(dtype) + (fractional ? " fractional" : " integer"));
      const auto pat = random_data({B, L, h, w}, dtype, 7);
      auto pos = random_positions(B, H, W, h, w, fractional, real_of(dtype), 8);
      pos[0][0] = 0;
      pos[0][1] = 0;
      pos[1][0] = H - h - 1 + (fractional ? 0.5 : 0.0);
      pos[1][1] = W - w - 1 + (fractional ? 0.25 : 0.0);
      poison_next_allocation(L * H * W, dtype, torch::kCPU);
      const auto out = overlap_add(pat, pos, H, W);
      EXPECT_EQ(out.sizes(), (std::vector<int64_t>{L, H, W}));
      EXPECT_EQ(out.scalar_type(), dtype);
      EXPECT_LE(relative_error(out, reference_overlap_add(pat, pos, H, W)), 4 * tolerance(dtype));
    }
  }
}

TEST(OverlapAdd, DeterministicAcrossThreadCounts) {
  const int64_t L = 3, H = 200, W = 64, h = 32, w = 32, B = 300;
  const auto pat = random_data({B, L, h, w}, torch::kComplexFloat, 9);
  const auto pos = random_positions(B, H, W, h, w, true, torch::kFloat, 10);
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = overlap_add(pat, pos, H, W);
  at::set_num_threads(std::max(2, saved));
  const auto many = overlap_add(pat, pos, H, W);
  const auto again = overlap_add(pat, pos, H, W);
  at::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(one, many));
  EXPECT_TRUE(torch::equal(many, again));
}

// The fused loss overlap-adds band by band, bands taken in whatever order
// threads come free: every band order must give overlap_add's result, bit
// for bit, for every dtype.
TEST(OverlapAdd, BandsInAnyOrderEqualTheOp) {
  const int64_t L = 2, H = 150, W = 300, h = 24, w = 20, B = 40;
  for (auto dtype : kAllDtypes) {
    const auto pat = random_data({B, L, h, w}, dtype, 21);
    const auto pos = random_positions(B, H, W, h, w, true, real_of(dtype), 22);
    const auto expected = overlap_add(pat, pos, H, W);
    const tessera::ops::CpuPatchExtractor windows(torch::zeros({L, H, W}, torch::TensorOptions().dtype(dtype)), pos,
                                                  h, w);
    const tessera::ops::CpuOverlapAdder adder(windows);
    ASSERT_GE(adder.bands(), 3) << "the test needs several bands";
    std::vector<int64_t> order(static_cast<size_t>(adder.bands()));
    for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(order.size() - 1 - k);
    std::swap(order.front(), order[order.size() / 2]);
    auto out = torch::full({L, H, W}, 7.0, torch::TensorOptions().dtype(dtype));  // every band must be set
    for (int64_t band : order) adder.add_band(band, pat.data_ptr(), out.data_ptr());
    EXPECT_TRUE(torch::equal(out, expected)) << dtype;
  }
  // The adder takes the extractor's windows, validated there.
  EXPECT_THROW(tessera::ops::CpuPatchExtractor(torch::zeros({1, H, W}, torch::kComplexDouble),
                                               torch::full({2, 2}, 290.0, torch::kDouble), h, w),
               tessera::DataError);  // windows outside the object
}

TEST(Patches, AdjointAllDtypes) {
  // <S x, y> == <x, S^T y> with <a, b> = sum(conj(a) * b).
  const int64_t L = 2, H = 30, W = 27, h = 8, w = 11, B = 12;
  for (auto dtype : kAllDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto x = random_data({L, H, W}, dtype, 11);
    const auto y = random_data({B, L, h, w}, dtype, 12);
    const auto pos = random_positions(B, H, W, h, w, true, real_of(dtype), 13);
    const auto lhs = (torch::conj(extract_patches(x, pos, h, w)).to(torch::kComplexDouble) *
                      y.to(torch::kComplexDouble)).sum();
    const auto rhs = (torch::conj(x).to(torch::kComplexDouble) *
                      overlap_add(y, pos, H, W).to(torch::kComplexDouble)).sum();
    const double scale = x.abs().to(torch::kDouble).norm().item<double>() *
                         y.abs().to(torch::kDouble).norm().item<double>();
    EXPECT_LE((lhs - rhs).abs().item<double>() / scale, tolerance(dtype));
  }
}

// ----------------------------------------------------------------------------
// Gradients

std::vector<torch::Tensor> gradcheck_inputs(torch::ScalarType dtype, bool object_grad,
                                            bool positions_grad) {
  const int64_t L = 2, H = 9, W = 10, h = 4, w = 5, B = 3;
  return {random_data({L, H, W}, dtype, 20).requires_grad_(object_grad),
          random_positions(B, H, W, h, w, true, real_of(dtype), 21).requires_grad_(positions_grad)};
}

TEST(ExtractPatchesGrad, ObjectAndPositionsComplex) {
  auto in = gradcheck_inputs(torch::kComplexDouble, true, true);
  const auto r = tessera::testing::gradcheck(
      [](const std::vector<torch::Tensor>& x) { return extract_patches(x[0], x[1], 4, 5); }, in);
  EXPECT_TRUE(r.passed) << r.message;
  EXPECT_GT(r.checked, 0);
}

TEST(ExtractPatchesGrad, ObjectAndPositionsReal) {
  auto in = gradcheck_inputs(torch::kDouble, true, true);
  const auto r = tessera::testing::gradcheck(
      [](const std::vector<torch::Tensor>& x) { return extract_patches(x[0], x[1], 4, 5); }, in);
  EXPECT_TRUE(r.passed) << r.message;
}

TEST(ExtractPatchesGrad, PositionsOnly) {
  // The object does not require grad: the op must still give the positions gradient.
  auto in = gradcheck_inputs(torch::kComplexDouble, false, true);
  const auto r = tessera::testing::gradcheck(
      [](const std::vector<torch::Tensor>& x) { return extract_patches(x[0], x[1], 4, 5); }, in);
  EXPECT_TRUE(r.passed) << r.message;
}

TEST(ExtractPatchesGrad, ThroughANonlinearLoss) {
  // sum(|patches * probe|^2): a real loss, as in a reconstruction.
  auto in = gradcheck_inputs(torch::kComplexDouble, true, true);
  in.push_back(random_data({4, 5}, torch::kComplexDouble, 22));
  const auto r = tessera::testing::gradcheck(
      [](const std::vector<torch::Tensor>& x) {
        return torch::view_as_real(extract_patches(x[0], x[1], 4, 5) * x[2]).pow(2).sum();
      },
      in);
  EXPECT_TRUE(r.passed) << r.message;
}

TEST(OverlapAddGrad, PatchesAndPositionsComplex) {
  const int64_t H = 9, W = 10, h = 4, w = 5, B = 3, L = 2;
  std::vector<torch::Tensor> in = {
      random_data({B, L, h, w}, torch::kComplexDouble, 23).requires_grad_(),
      random_positions(B, H, W, h, w, true, torch::kDouble, 24).requires_grad_()};
  const auto r = tessera::testing::gradcheck(
      [&](const std::vector<torch::Tensor>& x) { return overlap_add(x[0], x[1], H, W); }, in);
  EXPECT_TRUE(r.passed) << r.message;
}

TEST(OverlapAddGrad, PatchesAndPositionsReal) {
  const int64_t H = 9, W = 10, h = 4, w = 5, B = 3, L = 2;
  std::vector<torch::Tensor> in = {
      random_data({B, L, h, w}, torch::kDouble, 25).requires_grad_(),
      random_positions(B, H, W, h, w, true, torch::kDouble, 26).requires_grad_()};
  const auto r = tessera::testing::gradcheck(
      [&](const std::vector<torch::Tensor>& x) { return overlap_add(x[0], x[1], H, W); }, in);
  EXPECT_TRUE(r.passed) << r.message;
}

TEST(PatchesGrad, FloatPositionsGradientMatchesDouble) {
  const int64_t L = 2, H = 40, W = 40, h = 16, w = 16, B = 6;
  const auto obj = random_data({L, H, W}, torch::kComplexDouble, 27);
  const auto pos = random_positions(B, H, W, h, w, true, torch::kDouble, 28);
  auto grad_of = [&](torch::ScalarType dtype) {
    auto p = pos.to(real_of(dtype)).detach().clone().requires_grad_();
    auto o = obj.to(dtype).detach().clone().requires_grad_();
    torch::view_as_real(extract_patches(o, p, h, w)).pow(2).sum().backward();
    return std::make_pair(o.grad(), p.grad());
  };
  const auto [go64, gp64] = grad_of(torch::kComplexDouble);
  const auto [go32, gp32] = grad_of(torch::kComplexFloat);
  EXPECT_EQ(gp32.scalar_type(), torch::kFloat);
  EXPECT_EQ(go32.scalar_type(), torch::kComplexFloat);
  EXPECT_LE(relative_error(gp32, gp64), 1e-4);
  EXPECT_LE(relative_error(go32, go64), 1e-5);
}

TEST(PatchesGrad, ObjectGradientIsOverlapAddOfUpstream) {
  const int64_t L = 1, H = 32, W = 32, h = 8, w = 8, B = 10;
  auto obj = random_data({L, H, W}, torch::kComplexFloat, 29).requires_grad_();
  const auto pos = random_positions(B, H, W, h, w, true, torch::kFloat, 30);
  const auto g = random_data({B, L, h, w}, torch::kComplexFloat, 31);
  extract_patches(obj, pos, h, w).backward(g);
  EXPECT_TRUE(torch::equal(obj.grad(), overlap_add(g, pos, H, W)));
}

TEST(Gradcheck, DetectsAWrongGradient) {
  // x * stop_gradient(x): autograd says x, the true derivative is 2x.
  for (auto dtype : {torch::kDouble, torch::kComplexDouble}) {
    std::vector<torch::Tensor> in = {random_data({3, 2}, dtype, 32).requires_grad_()};
    const auto r = tessera::testing::gradcheck(
        [](const std::vector<torch::Tensor>& x) { return x[0] * x[0].detach(); }, in);
    EXPECT_FALSE(r.passed) << c10::toString(dtype);
    EXPECT_NE(r.message.find("input 0"), std::string::npos) << r.message;
    // The correct one passes, also through the random-direction path.
    tessera::testing::GradcheckOptions opt;
    opt.max_dofs_per_input = 4;
    const auto ok = tessera::testing::gradcheck(
        [](const std::vector<torch::Tensor>& x) { return x[0] * x[0]; }, in, opt);
    EXPECT_TRUE(ok.passed) << ok.message;
  }
}

// ----------------------------------------------------------------------------
// Errors

TEST(PatchesErrors, WindowOutsideObject) {
  const auto obj = random_data({1, 10, 12}, torch::kComplexFloat, 40);
  // Window 2 reads rows 5..9 + 1 = 10 > 10 - 1: one past the last row.
  const auto pos = torch::tensor({{0.f, 0.f}, {1.5f, 2.5f}, {5.5f, 1.f}});
  const auto msg = error_of([&] { extract_patches(obj, pos, 5, 5); });
  EXPECT_NE(msg.find("tessera::extract_patches"), std::string::npos) << msg;
  EXPECT_NE(msg.find("window 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("y=5.5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("10 x 12"), std::string::npos) << msg;
  // Same for the adjoint, and for negative and non-finite positions.
  const auto pat = random_data({3, 1, 5, 5}, torch::kComplexFloat, 41);
  EXPECT_NE(error_of([&] { overlap_add(pat, pos, 10, 12); }).find("window 2"), std::string::npos);
  const auto neg = torch::tensor({{0.f, -0.5f}});
  EXPECT_NE(error_of([&] { extract_patches(obj, neg, 3, 3); }).find("window 0"),
            std::string::npos);
  const auto nan = torch::tensor({{std::nanf(""), 1.f}});
  EXPECT_NE(error_of([&] { extract_patches(obj, nan, 3, 3); }).find("non-finite"),
            std::string::npos);
  // The last valid window: floor(y) + h + 1 == H.
  EXPECT_NO_THROW(extract_patches(obj, torch::tensor({{4.9f, 6.9f}}), 5, 5));
}

TEST(PatchesErrors, WrongDtypesAndShapes) {
  const auto obj = random_data({1, 10, 10}, torch::kComplexDouble, 42);
  const auto pos32 = torch::tensor({{1.f, 1.f}});
  auto msg = error_of([&] { extract_patches(obj, pos32, 3, 3); });
  EXPECT_NE(msg.find("positions must have dtype Double"), std::string::npos) << msg;
  msg = error_of([&] { extract_patches(torch::ones({1, 10, 10}, torch::kInt), pos32, 3, 3); });
  EXPECT_NE(msg.find("float32, float64, complex64 or complex128"), std::string::npos) << msg;
  msg = error_of([&] { extract_patches(obj[0], pos32.to(torch::kDouble), 3, 3); });
  EXPECT_NE(msg.find("3 dimensions"), std::string::npos) << msg;
  msg = error_of([&] { extract_patches(obj, torch::ones({2, 3}, torch::kDouble), 3, 3); });
  EXPECT_NE(msg.find("(B, 2)"), std::string::npos) << msg;
  msg = error_of([&] { extract_patches(obj, torch::ones({1, 2}, torch::kDouble), 0, 3); });
  EXPECT_NE(msg.find("window size"), std::string::npos) << msg;
  const auto pat = random_data({2, 1, 3, 3}, torch::kComplexDouble, 43);
  msg = error_of([&] { overlap_add(pat, torch::ones({3, 2}, torch::kDouble), 10, 10); });
  EXPECT_NE(msg.find("2 windows but positions has 3 rows"), std::string::npos) << msg;
  msg = error_of([&] { overlap_add(pat[0], torch::ones({2, 2}, torch::kDouble), 10, 10); });
  EXPECT_NE(msg.find("4 dimensions"), std::string::npos) << msg;
}

// ----------------------------------------------------------------------------
// CUDA against CPU

// Printed for the GPU check (scripts/gpu/check_all.sh collects these lines).
double reported(const char* op, torch::ScalarType dtype, double error) {
  std::printf("CUDA vs CPU max relative error: %s %s %.3e\n", op, c10::toString(dtype), error);
  return error;
}


// Runs without a GPU: the CUDA build (TESSERA_WITH_CUDA: a CUDA LibTorch and
// nvcc) must load LibTorch's CUDA half and register every tessera op for the
// CUDA dispatch key; the CPU-only build must not claim to.
TEST(CudaBuild, OpsRegisteredForCudaExactlyInTheCudaBuild) {
#ifdef TESSERA_WITH_CUDA
  constexpr bool cuda_build = true;
#else
  constexpr bool cuda_build = false;
#endif
  // c10_cuda registers the CUDA device guard when it is loaded.
  EXPECT_EQ(c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA), cuda_build);
  for (const char* name : {"tessera::extract_patches", "tessera::overlap_add",
                           "tessera::_patches_position_grad", "tessera::pack_regions",
                           "tessera::unpack_regions", "tessera::unpack_regions_",
                           "tessera::window_far_field_loss"}) {
    const auto op = c10::Dispatcher::singleton().findSchema({name, ""});
    ASSERT_TRUE(op.has_value()) << name << " is not registered";
    EXPECT_TRUE(op->hasKernelForDispatchKey(c10::DispatchKey::CPU)) << name;
    EXPECT_EQ(op->hasKernelForDispatchKey(c10::DispatchKey::CUDA), cuda_build) << name;
  }
}

TEST(PatchesCuda, ExtractMatchesCpu) {
  REQUIRE_CUDA();
  const int64_t L = 2, H = 150, W = 170, h = 33, w = 41, B = 64;
  for (auto dtype : kAllDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto obj = random_data({L, H, W}, dtype, 50);
    const auto pos = random_positions(B, H, W, h, w, true, real_of(dtype), 51);
    const auto cpu = extract_patches(obj, pos, h, w);
    const auto obj_gpu = obj.cuda(), pos_gpu = pos.cuda();
    poison_next_allocation(B * L * h * w, dtype, torch::kCUDA);
    const auto gpu = extract_patches(obj_gpu, pos_gpu, h, w);
    EXPECT_TRUE(gpu.is_cuda());
    EXPECT_FALSE(torch::isnan(torch::view_as_real(gpu.to(torch::kComplexDouble))).any()
                     .item<bool>());
    EXPECT_LE(reported("extract_patches", dtype, relative_error(gpu, cpu)), 4 * tolerance(dtype));
  }
}

TEST(PatchesCuda, OverlapAddMatchesCpu) {
  REQUIRE_CUDA();
  const int64_t L = 2, H = 150, W = 170, h = 33, w = 41, B = 64;
  for (auto dtype : kAllDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto pat = random_data({B, L, h, w}, dtype, 52);
    const auto pos = random_positions(B, H, W, h, w, true, real_of(dtype), 53);
    const auto cpu = overlap_add(pat, pos, H, W);
    const auto pat_gpu = pat.cuda(), pos_gpu = pos.cuda();
    poison_next_allocation(L * H * W, dtype, torch::kCUDA);
    const auto gpu = overlap_add(pat_gpu, pos_gpu, H, W);
    EXPECT_LE(reported("overlap_add", dtype, relative_error(gpu, cpu)), 16 * tolerance(dtype));
  }
}

TEST(PatchesCuda, GradientsMatchCpu) {
  REQUIRE_CUDA();
  const int64_t L = 2, H = 90, W = 80, h = 24, w = 20, B = 16;
  for (auto dtype : {torch::kComplexFloat, torch::kComplexDouble, torch::kDouble}) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto obj = random_data({L, H, W}, dtype, 54);
    const auto pos = random_positions(B, H, W, h, w, true, real_of(dtype), 55);
    const auto probe = random_data({h, w}, dtype, 56);
    auto grads = [&](torch::Device dev) {
      auto o = obj.to(dev).requires_grad_();
      auto p = pos.to(dev).requires_grad_();
      auto patches = extract_patches(o, p, h, w) * probe.to(dev);
      auto back = overlap_add(patches, p, H, W);
      (patches.abs().pow(2).sum() + back.abs().pow(2).sum()).backward();
      return std::make_pair(o.grad().cpu(), p.grad().cpu());
    };
    const auto [go_cpu, gp_cpu] = grads(torch::kCPU);
    const auto [go_gpu, gp_gpu] = grads(torch::kCUDA);
    const double tol = real_of(dtype) == torch::kFloat ? 1e-4 : 1e-10;
    EXPECT_LE(reported("patches object gradient", dtype, relative_error(go_gpu, go_cpu)), tol);
    EXPECT_LE(reported("patches position gradient", dtype, relative_error(gp_gpu, gp_cpu)), tol);
  }
}

TEST(PatchesCuda, WindowOutsideObjectThrows) {
  REQUIRE_CUDA();
  const auto obj = random_data({1, 10, 12}, torch::kComplexFloat, 57).cuda();
  const auto pos = torch::tensor({{0.f, 0.f}, {1.5f, 7.5f}}).cuda();
  EXPECT_NE(error_of([&] { extract_patches(obj, pos, 5, 5); }).find("window 1"),
            std::string::npos);
}

}  // namespace
