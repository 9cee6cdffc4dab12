// pocketfft for baseline x86-64 (SSE2) and for any other CPU the compiler targets.
#define TESSERA_POCKETFFT_BUILD baseline
#include "src/fft/pocketfft_build.inc"
