#pragma once
// Finite-difference gradient checker for LibTorch C++ (which has no
// torch.autograd.gradcheck). Header-only, no GoogleTest dependency.
//
// What it checks
//   f maps a vector of tensors to one tensor y (any shape, real or complex).
//   Inputs with requires_grad() == true are the ones differentiated; the others
//   (integer tensors, constants) are passed through unchanged. For P random
//   projections v (same shape and dtype as y; complex when y is complex) the
//   real scalar
//       phi_v(x) = Re(sum(conj(v) * y(x)))
//   is differentiated two ways:
//     autograd:  g = torch::autograd::grad({y}, {x...}, {v})  (PyTorch's
//                convention: for complex x, g = dphi/dRe(x) + i dphi/dIm(x));
//     numerical: central differences (phi(x + eps e) - phi(x - eps e)) / (2 eps)
//                along every real degree of freedom e of every differentiated
//                input (the real and the imaginary part of each complex
//                element separately), i.e. the full numerical Jacobian-vector
//                products J e, projected on v.
//   They must agree elementwise within atol + rtol * max(|numerical|, |autograd|).
//   Inputs with more than max_dofs_per_input real degrees of freedom are checked
//   along random_directions random directions u instead (compare
//   dphi/du numerically with <Re-view(g), u>).
//   It also checks that each gradient has its input's shape and dtype.
//
// Use double precision (float64 / complex128) inputs: with float32 the
// central differences are too noisy for tight tolerances. Keep f free of
// randomness and of kinks near x (e.g. bilinear interpolation is not
// differentiable at integer positions: use fractional parts away from 0 and 1).
//
// Example (GoogleTest):
//   auto x = torch::randn({4, 5}, torch::kComplexDouble).requires_grad_();
//   auto r = tessera::testing::gradcheck(
//       [](const std::vector<torch::Tensor>& in) { return in[0].abs().pow(2).sum(); }, {x});
//   EXPECT_TRUE(r.passed) << r.message;
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace tessera::testing {

using TensorFunction = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step on each real degree of freedom
  double atol = 1e-6;  // absolute tolerance
  double rtol = 1e-4;  // relative tolerance (relative to the larger of the two values)
  int num_projections = 2;             // random output projections v
  int64_t max_dofs_per_input = 20000;  // above this: random directions instead of every dof
  int random_directions = 16;
  uint64_t seed = 20240611;  // seed of the projections and directions
  int max_reported = 5;      // mismatches listed in the message
};

struct GradcheckResult {
  bool passed = true;
  double max_abs_error = 0;   // largest |numerical - autograd| seen
  int64_t checked = 0;        // number of scalar comparisons
  std::string message;        // empty when passed; otherwise the worst mismatches
  explicit operator bool() const { return passed; }
};

namespace gradcheck_detail {

inline torch::Tensor real_flat(const torch::Tensor& t) {
  return (t.is_complex() ? torch::view_as_real(t) : t).reshape({-1});
}

// phi_v(y) = Re(sum(conj(v) * y)) in double.
inline double project(const torch::Tensor& y, const torch::Tensor& v) {
  return (real_flat(y).to(torch::kDouble) * real_flat(v).to(torch::kDouble))
      .sum()
      .item<double>();
}

inline std::string dof_name(const torch::Tensor& x, int64_t k) {
  std::ostringstream s;
  if (x.is_complex())
    s << "element " << k / 2 << (k % 2 ? " (imag)" : " (real)");
  else
    s << "element " << k;
  return s.str();
}

}  // namespace gradcheck_detail

inline GradcheckResult gradcheck(const TensorFunction& f, const std::vector<torch::Tensor>& inputs,
                                 const GradcheckOptions& opt = {}) {
  namespace gd = gradcheck_detail;
  GradcheckResult result;
  std::ostringstream msg;
  int reported = 0;
  auto fail = [&](const std::string& what) {
    result.passed = false;
    if (reported++ < opt.max_reported) msg << what << "\n";
  };

  // Leaf copies: the differentiated ones require grad; the rest are untouched.
  std::vector<torch::Tensor> x;
  std::vector<size_t> diff;  // indices of the differentiated inputs
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    if (in.defined() && in.requires_grad()) {
      TORCH_CHECK(in.is_floating_point() || in.is_complex(), "gradcheck: input ", i,
                  " requires grad but is not floating point or complex");
      x.push_back(in.detach().clone(at::MemoryFormat::Contiguous).requires_grad_(true));
      diff.push_back(i);
    } else {
      x.push_back(in);
    }
  }
  TORCH_CHECK(!diff.empty(), "gradcheck: no input requires grad");

  torch::Tensor y = f(x);
  TORCH_CHECK(y.defined() && (y.is_floating_point() || y.is_complex()),
              "gradcheck: f must return a floating point or complex tensor");

  // Random projections (generated on the CPU for reproducibility).
  auto gen = at::detail::createCPUGenerator(opt.seed);
  std::vector<torch::Tensor> v;
  for (int p = 0; p < std::max(1, opt.num_projections); ++p)
    v.push_back(torch::randn(y.sizes(), gen, torch::TensorOptions().dtype(y.scalar_type()))
                    .to(y.device()));

  // Autograd: one vector-Jacobian product per projection.
  std::vector<torch::Tensor> diff_x;
  for (size_t i : diff) diff_x.push_back(x[i]);
  std::vector<std::vector<torch::Tensor>> analytic(v.size());  // [p][d]: real-flat, CPU double
  for (size_t p = 0; p < v.size(); ++p) {
    std::vector<torch::Tensor> g(diff_x.size());
    if (y.requires_grad()) {
      g = torch::autograd::grad({y}, diff_x, {v[p]}, /*retain_graph=*/p + 1 < v.size(),
                                /*create_graph=*/false, /*allow_unused=*/true);
    }
    for (size_t d = 0; d < diff_x.size(); ++d) {
      if (!g[d].defined()) {
        g[d] = torch::zeros_like(diff_x[d]);
      } else if (p == 0) {
        if (g[d].sizes() != diff_x[d].sizes())
          fail("input " + std::to_string(diff[d]) + ": gradient has shape " +
               c10::str(g[d].sizes()) + " but the input has shape " +
               c10::str(diff_x[d].sizes()));
        if (g[d].scalar_type() != diff_x[d].scalar_type())
          fail("input " + std::to_string(diff[d]) + ": gradient has dtype " +
               c10::toString(g[d].scalar_type()) + " but the input has dtype " +
               c10::toString(diff_x[d].scalar_type()));
      }
      analytic[p].push_back(gd::real_flat(g[d].detach().contiguous())
                                .to(torch::kCPU, torch::kDouble)
                                .contiguous());
    }
  }
  if (!result.passed) {
    result.message = msg.str();
    return result;
  }

  // Numerical: central differences of phi_v for all projections at once.
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> work;  // detached copies that get perturbed
  for (const auto& t : x) work.push_back(t.defined() ? t.detach() : t);
  auto eval = [&](std::vector<double>& phis) {
    const torch::Tensor out = f(work);
    for (size_t p = 0; p < v.size(); ++p) phis[p] = gd::project(out, v[p]);
  };
  std::vector<double> plus(v.size()), minus(v.size());
  auto compare = [&](size_t d, const std::string& where, double num, double ana) {
    const double err = std::abs(num - ana);
    result.max_abs_error = std::max(result.max_abs_error, err);
    ++result.checked;
    if (!(err <= opt.atol + opt.rtol * std::max(std::abs(num), std::abs(ana)))) {
      std::ostringstream s;
      s << "input " << diff[d] << ", " << where << ": numerical " << num << " vs autograd " << ana
        << " (error " << err << ")";
      fail(s.str());
    }
  };

  for (size_t d = 0; d < diff.size(); ++d) {
    torch::Tensor& xi = work[diff[d]];
    xi = xi.clone(at::MemoryFormat::Contiguous);
    const torch::Tensor flat = gd::real_flat(xi);  // a view: writes go to xi
    const int64_t n = flat.numel();
    if (n <= opt.max_dofs_per_input) {
      for (int64_t k = 0; k < n; ++k) {
        auto e = flat.narrow(0, k, 1);
        const auto orig = e.clone();
        e.add_(opt.eps);
        eval(plus);
        e.copy_(orig).sub_(opt.eps);
        eval(minus);
        e.copy_(orig);
        for (size_t p = 0; p < v.size(); ++p)
          compare(d, gd::dof_name(xi, k) + ", projection " + std::to_string(p),
                  (plus[p] - minus[p]) / (2 * opt.eps), analytic[p][d].data_ptr<double>()[k]);
      }
    } else {
      const torch::Tensor orig = flat.clone();
      for (int r = 0; r < opt.random_directions; ++r) {
        const auto u = torch::randn({n}, gen, torch::TensorOptions().dtype(torch::kDouble));
        const auto u_dev = u.to(flat.device(), flat.scalar_type());
        flat.copy_(orig).add_(u_dev, opt.eps);
        eval(plus);
        flat.copy_(orig).sub_(u_dev, opt.eps);
        eval(minus);
        flat.copy_(orig);
        for (size_t p = 0; p < v.size(); ++p)
          compare(d, "random direction " + std::to_string(r) + ", projection " + std::to_string(p),
                  (plus[p] - minus[p]) / (2 * opt.eps), (analytic[p][d] * u).sum().item<double>());
      }
    }
  }
  if (!result.passed) {
    std::ostringstream s;
    s << "gradcheck failed (" << reported << " mismatches of " << result.checked
      << " checks, max abs error " << result.max_abs_error << "):\n"
      << msg.str();
    result.message = s.str();
  }
  return result;
}

}  // namespace tessera::testing
