// FFTW 3 (GPL-2+): compiled only into builds configured with -DTESSERA_FFTW=ON.
#ifdef TESSERA_WITH_FFTW
#include <fftw3.h>

#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "src/error.h"
#include "src/fft/fft_backends.h"

namespace tessera::fft_detail {
namespace {

// fftw_* and fftwf_* under one name per precision.
template <typename T>
struct Fftw;
template <>
struct Fftw<double> {
  using plan = fftw_plan;
  using complex = fftw_complex;
  static plan make(int n[2], int count, complex* data, int sign) {
    return fftw_plan_many_dft(2, n, count, data, nullptr, 1, n[0] * n[1], data, nullptr, 1, n[0] * n[1], sign,
                              FFTW_ESTIMATE);
  }
  static void execute(plan p, complex* data) { fftw_execute_dft(p, data, data); }
  static int alignment_of(complex* data) { return fftw_alignment_of(reinterpret_cast<double*>(data)); }
};
template <>
struct Fftw<float> {
  using plan = fftwf_plan;
  using complex = fftwf_complex;
  static plan make(int n[2], int count, complex* data, int sign) {
    return fftwf_plan_many_dft(2, n, count, data, nullptr, 1, n[0] * n[1], data, nullptr, 1, n[0] * n[1], sign,
                               FFTW_ESTIMATE);
  }
  static void execute(plan p, complex* data) { fftwf_execute_dft(p, data, data); }
  static int alignment_of(complex* data) { return fftwf_alignment_of(reinterpret_cast<float*>(data)); }
};

// FFTW's planner is not thread-safe; executing a plan on new arrays is. A
// plan may only run on arrays of the alignment it was made for, so that is
// part of the key. Plans are kept for the life of the process (a few per
// shape: the full block and the tails a reconstruction's chunks leave).
std::mutex planner_mutex;

template <typename T>
typename Fftw<T>::plan plan_for(typename Fftw<T>::complex* data, int64_t count, int64_t h, int64_t w, bool inverse) {
  TESSERA_REQUIRE(Error, h * w * count <= (int64_t{1} << 31) - 1, "FFTW: ", count, " frames of ", h, " x ", w,
                  " are more than one transform of FFTW's int sizes can take");
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, int>;
  const Key key{count, h, w, inverse, Fftw<T>::alignment_of(data)};
  // Each thread looks up its own copy of the plan pointers: no lock per call.
  thread_local std::map<Key, typename Fftw<T>::plan> seen;
  if (auto it = seen.find(key); it != seen.end()) return it->second;
  static std::map<Key, typename Fftw<T>::plan> plans;
  std::lock_guard<std::mutex> lock(planner_mutex);
  auto& p = plans[key];
  if (!p) {
    int n[2] = {static_cast<int>(h), static_cast<int>(w)};
    // FFTW_ESTIMATE neither touches the array nor times anything: the same plan every run.
    p = Fftw<T>::make(n, static_cast<int>(count), data, inverse ? FFTW_BACKWARD : FFTW_FORWARD);
    TESSERA_REQUIRE(Error, p != nullptr, "FFTW could not plan ", count, " transforms of ", h, " x ", w);
  }
  seen[key] = p;
  return p;
}

}  // namespace

template <typename T>
void fftw_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse) {
  auto* data = reinterpret_cast<typename Fftw<T>::complex*>(frames);
  Fftw<T>::execute(plan_for<T>(data, count, h, w, inverse), data);
  scale_in_place(frames, count * h * w, static_cast<T>(1.0 / std::sqrt(static_cast<double>(h * w))));
}

template void fftw_fft2<float>(std::complex<float>*, int64_t, int64_t, int64_t, bool);
template void fftw_fft2<double>(std::complex<double>*, int64_t, int64_t, int64_t, bool);

std::string fftw_library_version() { return ::fftw_version; }

}  // namespace tessera::fft_detail
#endif
