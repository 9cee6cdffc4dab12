// CPU kernels of tessera::extract_patches, tessera::overlap_add and
// tessera::_patches_position_grad.
//
// All kernels work on the real view of contiguous tensors: C = 2 interleaved
// channels for complex data, C = 1 for real data. The bilinear weights are the
// same for both channels, so a window row is one contiguous run of w*C reals
// and the stencil's right neighbour is C reals further on: every inner loop is
// a plain, vectorisable loop over k in [0, w*C).
//
// Bilinear stencil of window b (y0 = floor(y), fy = y - y0, same for x):
//   out[i, j] = (1-fy)(1-fx) O[y0+i, x0+j]   + (1-fy) fx O[y0+i, x0+j+1]
//             +     fy (1-fx) O[y0+i+1, x0+j] +     fy fx O[y0+i+1, x0+j+1]
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "src/ops/ops_internal.h"
#include "src/ops/patches.h"
#include "src/simd.h"

namespace tessera::ops {
namespace {

using detail::Window;

// One window of one slice: h rows of `row` reals from the object at src.
template <typename T>
TESSERA_SIMD_CLONES void extract_window(const T* __restrict__ src, T* __restrict__ dst, const Window<T>& win,
                                        int64_t obj_row, int64_t row, int64_t C, int64_t h) {
  if (win.fy == T(0) && win.fx == T(0)) {  // integer position: plain copy
    for (int64_t i = 0; i < h; ++i) std::memcpy(dst + i * row, src + i * obj_row, sizeof(T) * row);
    return;
  }
  const T w00 = (1 - win.fy) * (1 - win.fx), w01 = (1 - win.fy) * win.fx;
  const T w10 = win.fy * (1 - win.fx), w11 = win.fy * win.fx;
  for (int64_t i = 0; i < h; ++i) {
    const T* __restrict__ r0 = src + i * obj_row;
    const T* __restrict__ r1 = r0 + obj_row;
    T* __restrict__ d = dst + i * row;
    for (int64_t k = 0; k < row; ++k) d[k] = w00 * r0[k] + w01 * r0[k + C] + w10 * r1[k] + w11 * r1[k + C];
  }
}

// Rows [lo, hi) of one slice's output (out points at its column x0) receive
// window P: each row combines the two patch rows reaching it into v (padded by
// C zeros on both sides), then out[k] += (1-fx) v[k] + fx v[k-C].
template <typename T>
TESSERA_SIMD_CLONES void add_window_rows(const T* __restrict__ P, T* __restrict__ out, T* __restrict__ v,
                                         const Window<T>& win, int64_t lo, int64_t hi, int64_t obj_row, int64_t row,
                                         int64_t C, int64_t h) {
  const T cy0 = 1 - win.fy, cy1 = win.fy, cx0 = 1 - win.fx, cx1 = win.fx;
  for (int64_t r = lo; r < hi; ++r) {
    const int64_t i1 = r - win.y0;  // patch row reaching r with weight 1-fy
    const int64_t i0 = i1 - 1;      // patch row reaching r with weight fy
    if (i1 < h && i0 >= 0) {
      const T* __restrict__ p1 = P + i1 * row;
      const T* __restrict__ p0 = P + i0 * row;
      for (int64_t k = 0; k < row; ++k) v[k] = cy0 * p1[k] + cy1 * p0[k];
    } else if (i1 < h) {
      const T* __restrict__ p1 = P + i1 * row;
      for (int64_t k = 0; k < row; ++k) v[k] = cy0 * p1[k];
    } else {
      const T* __restrict__ p0 = P + i0 * row;
      for (int64_t k = 0; k < row; ++k) v[k] = cy1 * p0[k];
    }
    T* __restrict__ o = out + r * obj_row;
    if (cx1 == T(0)) {
      for (int64_t k = 0; k < row; ++k) o[k] += v[k];
    } else {
      const T* __restrict__ vm = v - C;
      for (int64_t k = 0; k < row + C; ++k) o[k] += cx0 * v[k] + cx1 * vm[k];
    }
  }
}

// Adjoint: out[l, r, c] = sum_b (S_b^T patches_b)[l, r, c]. Windows overlap,
// so instead of scattering (which would need atomics or per-thread copies of
// the object) each task owns bands of output rows and gathers from every
// window that touches them. The windows are visited in a fixed order (by top
// row, then by index), so every output element sums its windows in the same
// order whatever the thread count, or the order of the bands: the result is
// deterministic.
template <typename T>
struct OverlapAddPlan {
  std::vector<Window<T>> windows;
  std::vector<int64_t> order, tops;  // window indices sorted by top row, and their top rows
  int64_t L, H, W, C, h, w, band_rows, bands;

  OverlapAddPlan(std::vector<Window<T>> wins, int64_t L_, int64_t H_, int64_t W_, int64_t C_, int64_t h_, int64_t w_)
      : windows(std::move(wins)), L(L_), H(H_), W(W_), C(C_), h(h_), w(w_) {
    const int64_t B = static_cast<int64_t>(windows.size());
    order.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) order[b] = b;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return windows[a].y0 < windows[b].y0; });
    tops.resize(static_cast<size_t>(B));
    for (int64_t k = 0; k < B; ++k) tops[k] = windows[order[k]].y0;
    // Bands of ~64 KiB of output: a band's rows stay in L2 while its windows are added.
    band_rows = std::max<int64_t>(1, (int64_t(64) << 10) / (static_cast<int64_t>(sizeof(T)) * std::max<int64_t>(W * C, 1)));
    bands = (L * H + band_rows - 1) / band_rows;
  }

  // Sets rows [bnd * band_rows, ...) of out (all slices stacked as L * H rows).
  // v: scratch of w * C + 2 * C reals.
  void add_band(int64_t bnd, const T* __restrict__ patches, T* __restrict__ out, T* vbuf) const {
    const int64_t row = w * C, obj_row = W * C, total_rows = L * H;
    // v holds one combined window row, padded with C zeros on both sides, so
    // that out[x0*C + k] += (1-fx) v[k] + fx v[k-C] is one loop over k in [0, row + C).
    std::fill(vbuf, vbuf + row + 2 * C, T(0));
    T* __restrict__ v = vbuf + C;
    const int64_t s_begin = bnd * band_rows, s_end = std::min(total_rows, s_begin + band_rows);
    std::memset(out + s_begin * obj_row, 0, sizeof(T) * (s_end - s_begin) * obj_row);
    // Split the band at slice boundaries.
    for (int64_t s = s_begin; s < s_end;) {
      const int64_t l = s / H, r_begin = s % H;
      const int64_t r_end = std::min(H, r_begin + (s_end - s));
      // A window writes output rows y0 .. y0 + h (h + 1 rows): it touches
      // [r_begin, r_end) when r_begin - h <= y0 < r_end.
      auto first = std::lower_bound(tops.begin(), tops.end(), r_begin - h);
      for (auto it = first; it != tops.end() && *it < r_end; ++it) {
        const int64_t b = order[it - tops.begin()];
        const Window<T>& win = windows[b];
        // (The last row only receives weight fy: skip it when fy == 0.)
        const int64_t lo = std::max(r_begin, win.y0);
        const int64_t hi = std::min(r_end, win.y0 + h + (win.fy != T(0) ? 1 : 0));
        const T* P = patches + (b * L + l) * h * row;
        add_window_rows<T>(P, out + (l * H * W + win.x0) * C, v, win, lo, hi, W * C, row, C, h);
      }
      s += r_end - r_begin;
    }
  }
};

template <typename T>
void overlap_add_kernel(const OverlapAddPlan<T>& plan, const T* __restrict__ patches, T* __restrict__ out) {
  // Bands dealt round-robin to the tasks, for balance when windows cluster.
  const int64_t n_tasks = std::min<int64_t>(plan.bands, std::max(1, at::get_num_threads()));
  at::parallel_for(0, n_tasks, 1, [&](int64_t task_begin, int64_t task_end) {
    std::vector<T> vbuf(static_cast<size_t>(plan.w * plan.C + 2 * plan.C));
    for (int64_t task = task_begin; task < task_end; ++task)
      for (int64_t bnd = task; bnd < plan.bands; bnd += n_tasks) plan.add_band(bnd, patches, out, vbuf.data());
  });
}

// grad_pos[b] = sum over (l, i, k) of grad * d(stencil)/d(fy, fx).
template <typename T>
void position_grad_kernel(const T* __restrict__ grad, const T* __restrict__ obj,
                          const Window<T>* windows, T* __restrict__ out, int64_t B, int64_t L,
                          int64_t H, int64_t W, int64_t C, int64_t h, int64_t w) {
  const int64_t row = w * C, obj_row = W * C;
  constexpr int kLanes = 8;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Window<T>& win = windows[b];
      const T cy0 = 1 - win.fy, cy1 = win.fy, cx0 = 1 - win.fx, cx1 = win.fx;
      double gy = 0, gx = 0;
      for (int64_t l = 0; l < L; ++l) {
        const T* src = obj + ((l * H + win.y0) * W + win.x0) * C;
        const T* g = grad + (b * L + l) * h * row;
        for (int64_t i = 0; i < h; ++i) {
          const T* __restrict__ r0 = src + i * obj_row;
          const T* __restrict__ r1 = r0 + obj_row;
          const T* __restrict__ gi = g + i * row;
          // Lane-parallel partial sums (vectorisable), reduced to double per row.
          T ay[kLanes] = {}, ax[kLanes] = {};
          int64_t k = 0;
          for (; k + kLanes <= row; k += kLanes) {
            for (int q = 0; q < kLanes; ++q) {
              const T a = r0[k + q], bb = r0[k + q + C], c = r1[k + q], d = r1[k + q + C];
              ay[q] += gi[k + q] * (cx0 * (c - a) + cx1 * (d - bb));
              ax[q] += gi[k + q] * (cy0 * (bb - a) + cy1 * (d - c));
            }
          }
          double sy = 0, sx = 0;
          for (; k < row; ++k) {
            const T a = r0[k], bb = r0[k + C], c = r1[k], d = r1[k + C];
            sy += static_cast<double>(gi[k] * (cx0 * (c - a) + cx1 * (d - bb)));
            sx += static_cast<double>(gi[k] * (cy0 * (bb - a) + cy1 * (d - c)));
          }
          for (int q = 0; q < kLanes; ++q) {
            sy += ay[q];
            sx += ax[q];
          }
          gy += sy;
          gx += sx;
        }
      }
      out[2 * b] = static_cast<T>(gy);
      out[2 * b + 1] = static_cast<T>(gx);
    }
  });
}

at::Tensor extract_patches_cpu(const at::Tensor& object, const at::Tensor& positions, int64_t h,
                               int64_t w) {
  const CpuPatchExtractor windows(object, positions, h, w);  // validates every window
  const int64_t B = positions.size(0), L = object.size(0);
  auto out = at::empty({B, L, h, w}, object.options());
  if (out.numel() == 0) return out;
  auto* data = static_cast<char*>(out.data_ptr());
  const int64_t window_bytes = L * h * w * static_cast<int64_t>(out.element_size());
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    windows.extract(begin, end, data + begin * window_bytes);
  });
  return out;
}

}  // namespace

struct CpuPatchExtractor::State {
  at::Tensor object;  // contiguous
  int64_t L, H, W, C, h, w;
  std::vector<Window<float>> windows_f;
  std::vector<Window<double>> windows_d;
};

CpuPatchExtractor::CpuPatchExtractor(const torch::Tensor& object, const torch::Tensor& positions, int64_t h,
                                     int64_t w) {
  constexpr const char* op = "tessera::extract_patches";
  detail::check_patches_args(op, object, "object", 3, positions, h, w);
  TESSERA_REQUIRE(Error, object.device().is_cpu() && positions.device().is_cpu(), op, ": expected CPU tensors");
  auto st = std::make_shared<State>();
  st->object = object.contiguous();
  st->L = object.size(0), st->H = object.size(1), st->W = object.size(2);
  st->C = detail::channels(object), st->h = h, st->w = w;
  const auto pos = positions.contiguous();
  if (pos.scalar_type() == at::kFloat)
    st->windows_f = detail::compute_windows<float>(op, pos, st->H, st->W, h, w);
  else
    st->windows_d = detail::compute_windows<double>(op, pos, st->H, st->W, h, w);
  state_ = std::move(st);
}

void CpuPatchExtractor::extract(int64_t begin, int64_t end, void* out) const {
  const State& st = *state_;
  const int64_t row = st.w * st.C, obj_row = st.W * st.C;
  auto run = [&](const auto* obj, const auto& windows, auto* dst) {
    for (int64_t b = begin; b < end; ++b)
      for (int64_t l = 0; l < st.L; ++l) {
        const auto& win = windows[static_cast<size_t>(b)];
        extract_window(obj + ((l * st.H + win.y0) * st.W + win.x0) * st.C, dst + ((b - begin) * st.L + l) * st.h * row,
                       win, obj_row, row, st.C, st.h);
      }
  };
  const auto obj_r = detail::real_view(st.object);
  if (obj_r.scalar_type() == at::kFloat)
    run(obj_r.data_ptr<float>(), st.windows_f, static_cast<float*>(out));
  else
    run(obj_r.data_ptr<double>(), st.windows_d, static_cast<double*>(out));
}

struct CpuOverlapAdder::State {
  std::unique_ptr<OverlapAddPlan<float>> plan_f;
  std::unique_ptr<OverlapAddPlan<double>> plan_d;
};

CpuOverlapAdder::CpuOverlapAdder(const CpuPatchExtractor& windows) {
  // The extractor's windows, already validated against the object.
  const auto& w = *windows.state_;
  auto st = std::make_shared<State>();
  if (c10::toRealValueType(w.object.scalar_type()) == at::kDouble)
    st->plan_d = std::make_unique<OverlapAddPlan<double>>(w.windows_d, w.L, w.H, w.W, w.C, w.h, w.w);
  else
    st->plan_f = std::make_unique<OverlapAddPlan<float>>(w.windows_f, w.L, w.H, w.W, w.C, w.h, w.w);
  state_ = std::move(st);
}

int64_t CpuOverlapAdder::bands() const { return state_->plan_f ? state_->plan_f->bands : state_->plan_d->bands; }

void CpuOverlapAdder::add_band(int64_t band, const void* patches, void* out) const {
  auto run = [&](const auto& plan, auto* o) {
    using T = std::remove_pointer_t<decltype(o)>;
    std::vector<T> vbuf(static_cast<size_t>(plan.w * plan.C + 2 * plan.C));
    plan.add_band(band, static_cast<const T*>(patches), o, vbuf.data());
  };
  if (state_->plan_f)
    run(*state_->plan_f, static_cast<float*>(out));
  else
    run(*state_->plan_d, static_cast<double*>(out));
}

namespace {

at::Tensor overlap_add_cpu(const at::Tensor& patches, const at::Tensor& positions, int64_t H,
                           int64_t W) {
  constexpr const char* op = "tessera::overlap_add";
  TESSERA_REQUIRE(Error, patches.defined() && patches.dim() == 4, op,
                  ": patches must have 4 dimensions (B, L, h, w), got shape ",
                  patches.defined() ? patches.sizes() : c10::IntArrayRef{});
  detail::check_patches_args(op, patches, "patches", 4, positions, patches.size(2),
                             patches.size(3));
  TESSERA_REQUIRE(Error, patches.device().is_cpu(), op, ": expected CPU tensors");
  TESSERA_REQUIRE(Error, positions.size(0) == patches.size(0), op, ": patches has ",
                  patches.size(0), " windows but positions has ", positions.size(0), " rows");
  TESSERA_REQUIRE(Error, H >= 0 && W >= 0, op, ": object size must be non-negative, got ", H,
                  " x ", W);
  const auto pat = patches.contiguous();
  const auto pos = positions.contiguous();
  const int64_t L = pat.size(1), h = pat.size(2), w = pat.size(3);
  auto out = at::empty({L, H, W}, pat.options());
  const auto pat_r = detail::real_view(pat);
  auto out_r = detail::real_view(out);
  const int64_t C = detail::channels(pat);
  AT_DISPATCH_FLOATING_TYPES(pat_r.scalar_type(), "overlap_add_cpu", [&] {
    const OverlapAddPlan<scalar_t> plan(detail::compute_windows<scalar_t>(op, pos, H, W, h, w), L, H, W, C, h, w);
    if (out.numel() == 0) return;
    overlap_add_kernel<scalar_t>(plan, pat_r.data_ptr<scalar_t>(), out_r.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor patches_position_grad_cpu(const at::Tensor& grad, const at::Tensor& object,
                                     const at::Tensor& positions) {
  constexpr const char* op = "tessera::_patches_position_grad";
  TESSERA_REQUIRE(Error, grad.defined() && grad.dim() == 4, op,
                  ": grad must have 4 dimensions (B, L, h, w)");
  detail::check_patches_args(op, object, "object", 3, positions, grad.size(2), grad.size(3));
  TESSERA_REQUIRE(Error, object.device().is_cpu() && grad.device().is_cpu(), op,
                  ": expected CPU tensors");
  TESSERA_REQUIRE(Error, grad.scalar_type() == object.scalar_type(), op, ": grad has dtype ",
                  grad.scalar_type(), " but object has dtype ", object.scalar_type());
  TESSERA_REQUIRE(Error,
                  grad.size(0) == positions.size(0) && grad.size(1) == object.size(0), op,
                  ": grad has shape ", grad.sizes(), " but there are ", positions.size(0),
                  " windows and ", object.size(0), " object slices");
  const auto g = grad.contiguous();
  const auto obj = object.contiguous();
  const auto pos = positions.contiguous();
  const int64_t B = pos.size(0), L = obj.size(0), H = obj.size(1), W = obj.size(2);
  const int64_t h = g.size(2), w = g.size(3);
  auto out = at::empty({B, 2}, pos.options());
  const auto g_r = detail::real_view(g);
  const auto obj_r = detail::real_view(obj);
  const int64_t C = detail::channels(obj);
  AT_DISPATCH_FLOATING_TYPES(obj_r.scalar_type(), "patches_position_grad_cpu", [&] {
    const auto windows = detail::compute_windows<scalar_t>(op, pos, H, W, h, w);
    if (B == 0) return;
    position_grad_kernel<scalar_t>(g_r.data_ptr<scalar_t>(), obj_r.data_ptr<scalar_t>(),
                                   windows.data(), out.data_ptr<scalar_t>(), B, L, H, W, C, h, w);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tessera, CPU, m) {
  m.impl("extract_patches", TORCH_FN(extract_patches_cpu));
  m.impl("overlap_add", TORCH_FN(overlap_add_cpu));
  m.impl("_patches_position_grad", TORCH_FN(patches_position_grad_cpu));
}

}  // namespace tessera::ops
