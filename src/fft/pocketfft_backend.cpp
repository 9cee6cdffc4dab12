// pocketfft: the build for the widest instruction set this CPU has, chosen once.
#include <algorithm>
#include <string>
#include <vector>

#include "src/error.h"
#include "src/fft/fft_backends.h"

namespace tessera::fft_detail {
namespace {

template <typename T>
void run(PocketfftIsa isa, std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse) {
  switch (isa) {
#ifdef TESSERA_POCKETFFT_WIDE_BUILDS
    case PocketfftIsa::avx2: return pocketfft_fft2_avx2(frames, count, h, w, inverse);
#endif
    case PocketfftIsa::baseline: return pocketfft_fft2_baseline(frames, count, h, w, inverse);
    default: break;
  }
  throw Error(detail::concat("pocketfft: the ", pocketfft_isa_name(isa), " build is not in this library"));
}

std::vector<PocketfftIsa> detect() {
  std::vector<PocketfftIsa> isas;
#ifdef TESSERA_POCKETFFT_WIDE_BUILDS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) isas.push_back(PocketfftIsa::avx2);
#endif
  isas.push_back(PocketfftIsa::baseline);
  return isas;
}

}  // namespace

const char* pocketfft_isa_name(PocketfftIsa isa) {
  switch (isa) {
    case PocketfftIsa::baseline: return "baseline";
    case PocketfftIsa::avx2: return "avx2";
  }
  return "unknown";
}

std::vector<PocketfftIsa> pocketfft_isas_on_this_cpu() {
  static const std::vector<PocketfftIsa> isas = detect();
  return isas;
}

template <typename T>
void pocketfft_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse, PocketfftIsa isa) {
  const auto& isas = pocketfft_isas_on_this_cpu();
  TESSERA_REQUIRE(Error, std::find(isas.begin(), isas.end(), isa) != isas.end(), "pocketfft: this CPU cannot run the ",
                  pocketfft_isa_name(isa), " build");
  run(isa, frames, count, h, w, inverse);
}

template <typename T>
void pocketfft_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse) {
  static const PocketfftIsa widest = pocketfft_isas_on_this_cpu().front();
  run(widest, frames, count, h, w, inverse);
}

template void pocketfft_fft2<float>(std::complex<float>*, int64_t, int64_t, int64_t, bool);
template void pocketfft_fft2<double>(std::complex<double>*, int64_t, int64_t, int64_t, bool);
template void pocketfft_fft2<float>(std::complex<float>*, int64_t, int64_t, int64_t, bool, PocketfftIsa);
template void pocketfft_fft2<double>(std::complex<double>*, int64_t, int64_t, int64_t, bool, PocketfftIsa);

std::string pocketfft_library_version() {
  return std::string("pocketfft C++ of numpy 2.1.3, ") + pocketfft_isa_name(pocketfft_isas_on_this_cpu().front()) +
         " build on this CPU";
}

}  // namespace tessera::fft_detail
