#include "src/threads.h"

#include <cstdlib>
#include <string>
#include <iostream>
#include <thread>

#include <ATen/Parallel.h>

namespace tessera {

int configure_threads(int requested) {
  int n = requested;
  if (n <= 0) {
    if (const char* env = std::getenv("OMP_NUM_THREADS")) n = std::atoi(env);
  }
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = cores;
  if (n <= 0) n = 1;
  if (cores > 0 && n > cores) {
    // More threads than cores only add scheduling waits (and 10000 threads
    // exhaust memory or the process limit).
    std::cerr << "warning: " << n << " threads requested but this machine has " << cores << " cores; using " << cores
              << std::endl;
    n = cores;
  }
  if (at::get_num_threads() != n) at::set_num_threads(n);
  return at::get_num_threads();
}

}  // namespace tessera
