#pragma once
// Orthonormal 2-D DFTs of a batch of frames, in place, on the CPU, by the
// fastest FFT library this build has.
//
// Why not torch::fft everywhere: Debian's LibTorch 1.13 computes CPU FFTs with
// pocketfft compiled for baseline x86-64 (no AVX), out of place, allocating its
// result on every call; the fused loss transforms a cache-sized block at a time
// and can reuse that block's memory. The libraries:
//   libtorch  torch::fft (pocketfft in Debian's 1.13, MKL in pip x86 wheels);
//             always available, and the only one for CUDA tensors
//   pocketfft the same pocketfft, copied into third_party/ (BSD-3-Clause) and
//             compiled for AVX2 and for baseline x86-64, the wider where the
//             CPU has it; always available
//   mkl       MKL's DFTI, called directly: available where the LibTorch in use
//             exports it (pip x86-64 wheels link MKL into libtorch_cpu) and
//             mkl_dfti.h is found (PyPI's mkl-include)
//   fftw      FFTW 3 (Debian's libfftw3-dev), only with -DTESSERA_FFTW=ON:
//             FFTW is GPL-2+, so such a build of tessera is GPL (README, Licence)
// The build's default is chosen by CMake (TESSERA_FFT=AUTO picks fftw if it
// was enabled, else pocketfft).
//
// Every library computes the same transform; results differ by float rounding.
// Plans (MKL descriptors, FFTW plans) are made once per shape, precision and
// batch size and reused; FFTW plans with FFTW_ESTIMATE, which chooses the same
// algorithm every run, so a rerun or a resume reproduces a result bit for bit
// (FFTW_MEASURE times candidates and may choose differently each run).
// The transforms run on the calling thread only: the fused loss runs one block
// per thread, and a library that spawned threads inside would oversubscribe.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace tessera {

enum class FftLibrary { libtorch, pocketfft, mkl, fftw };

// "libtorch", "pocketfft", "mkl", "fftw"; and back (an unknown or unavailable name is an error naming the available ones).
const char* fft_library_name(FftLibrary library);
FftLibrary fft_library_from_name(const std::string& name);

// The libraries this build can call, the build's default first.
std::vector<FftLibrary> available_fft_libraries();
FftLibrary default_fft_library();
// The library the fused operators use now: the default, unless a
// ScopedFftLibrary (tests, benchmarks) chose another.
FftLibrary active_fft_library();
// For --version and result files, e.g. "mkl (MKL 2024.0.2 in LibTorch 2.11.0)".
std::string fft_library_description(FftLibrary library);

// Chooses the library for the fused operators while it lives (process-wide;
// for tests and benchmarks that compare libraries in one run).
class ScopedFftLibrary {
 public:
  explicit ScopedFftLibrary(FftLibrary library);
  ~ScopedFftLibrary();
  ScopedFftLibrary(const ScopedFftLibrary&) = delete;
  ScopedFftLibrary& operator=(const ScopedFftLibrary&) = delete;

 private:
  FftLibrary previous_;
};

// frames: a contiguous complex64 or complex128 CPU tensor (..., h, w), every
// (h, w) frame transformed in place by the orthonormal 2-D DFT (inverse: its
// inverse, which is its adjoint). Runs on the calling thread.
void fft2_in_place(const torch::Tensor& frames, bool inverse, FftLibrary library = active_fft_library());

}  // namespace tessera
