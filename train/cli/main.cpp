// tessera: ptychographic reconstruction with image gradient decomposition.
#include <cstring>
#include <iostream>
#include <string>

#include <torch/version.h>

#include "src/error.h"
#include "src/fft/batched_fft.h"
#include "src/process_memory.h"
#include "train/cli/arguments.h"
#include "train/cli/commands.h"

namespace {

void usage() {
  std::cout << "tessera " TESSERA_VERSION " - ptychographic reconstruction\n\n"
               "usage: tessera <command> [options]   (tessera <command> --help for details)\n\n"
               "commands:\n"
               "  simulate     write a CXI data set of the built-in phantom\n"
               "  info         describe a data file and list everything wrong with it\n"
               "  reconstruct  reconstruct object and probe from a data file\n"
               "  plan         tiling, neighbours, memory and traffic per rank, without reconstructing\n"
               "  frc          resolution from two reconstructions of independent data (Fourier ring correlation)\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 1 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "tessera " TESSERA_VERSION "\nLibTorch " TORCH_VERSION "\nCPU FFT: "
              << tessera::fft_library_description(tessera::default_fft_library()) << "\n";
    return 0;
  }
  const std::string cmd = argv[1];
  tessera::set_allocator_policy();
  try {
    if (cmd == "simulate") return tessera::cli::simulate(argc - 1, argv + 1);
    if (cmd == "info") return tessera::cli::info(argc - 1, argv + 1);
    if (cmd == "reconstruct") return tessera::cli::reconstruct(argc - 1, argv + 1);
    if (cmd == "plan") return tessera::cli::plan(argc - 1, argv + 1);
    if (cmd == "frc") return tessera::cli::frc(argc - 1, argv + 1);
    std::cerr << "tessera: unknown command '" << cmd << "'\n";
    usage();
    return 1;
  } catch (const tessera::Error& e) {
    std::cerr << "tessera " << cmd << ": error: " << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    // cxxopts and c10 errors: still a clear message and exit 1, never a crash.
    std::cerr << "tessera " << cmd << ": error: " << tessera::cli::name_the_option(e.what(), argc, argv) << std::endl;
    return 1;
  }
}
