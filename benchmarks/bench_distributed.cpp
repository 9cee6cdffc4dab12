// Distributed reconstruction on one machine, K = 1, 2, 4, 8 ranks (issue 4):
// per-rank peak memory, seconds per iteration, bytes sent per rank per
// iteration (measured by the Communicator, predicted by the memory model and
// counted by the engine's HaloExchange), and the fraction of each iteration
// spent blocked on communication; the memory model's per-rank peak next to
// the measured one.
//
// Driver (default): simulates a sample (or takes --data), then for each K
// launches K copies of this binary as ranks, directly (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT, as a batch system sets them) or through torchrun
// (--launcher torchrun), and prints rank 0's report and a summary table.
//
//   bench_distributed [--ranks 1,2,4,8] [--scan 48] [--frame 64] [--step 4]
//                     [--iterations 4] [--warmup 1] [--data FILE]
//                     [--launcher direct|torchrun] [--threads 1]
//                     [--chunk-size 64] [--batch-size 0] [--modes 1]
//
// Worker (one rank; what the driver or torchrun starts):
//
//   torchrun --standalone --nproc_per_node=K --redirects 1 --tee 1 --no_python
//            bench_distributed --worker --data FILE [--iterations 4] [--warmup 1]
//
// Memory: every CPU tensor allocation goes through a counting allocator
// installed before anything else (c10::SetCPUAllocator), so "tensor peak" is
// the high-water mark of live tensor bytes, measured from just before the
// engine is built (the data set's geometry and truth are not counted) over the
// timed iterations; "setup peak" is the high-water mark while the engine was
// built (frames are read and converted there). ru_maxrss is the whole process
// (LibTorch, Gloo, HDF5 included). Communication: Communicator::bytes_sent
// counts isend payloads (the halo reduction and refresh); allreduces (loss,
// probe gradient) are not counted there and are listed separately. Wait: time
// blocked in the halo exchange and in allreduces (IterationStats::wait_seconds),
// which on an oversubscribed machine includes waiting for a rank that is not
// scheduled.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "data/cxi_writer.h"
#include "data/simulate.h"
#include "src/comm/communicator.h"
#include "src/comm/distributed_env.h"
#include "src/memory_model.h"
#include "src/threads.h"
#include "tests/child_process.h"
#include "train/reconstruction.h"
#include "train/scan_problem.h"

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Counting CPU allocator

std::atomic<int64_t> g_live{0}, g_peak{0};

void note_alloc(int64_t n) {
  const int64_t now = g_live.fetch_add(n) + n;
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

struct Counted {
  c10::DataPtr inner;
  int64_t bytes;
};

void delete_counted(void* ctx) {
  auto* c = static_cast<Counted*>(ctx);
  g_live.fetch_sub(c->bytes);
  delete c;  // frees the inner allocation with its own deleter
}

struct CountingAllocator final : c10::Allocator {
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}
  // LibTorch 2.x's allocate() is not const and it adds copy_data().
#if TORCH_VERSION_MAJOR >= 2
  c10::DataPtr allocate(size_t n) override { return counted(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t n) const override { return counted(n); }
#endif
  c10::DataPtr counted(size_t n) const {
    c10::DataPtr dp = inner_->allocate(n);
    void* data = dp.get();
    const auto device = dp.device();
    auto* ctx = new Counted{std::move(dp), static_cast<int64_t>(n)};
    note_alloc(ctx->bytes);
    return {data, ctx, &delete_counted, device};
  }
  c10::Allocator* inner_;
};

void install_counting_allocator() {
  static CountingAllocator counting(c10::GetDefaultCPUAllocator());
  c10::SetCPUAllocator(&counting, /*priority=*/100);
}

// Peak resident set of this process image (VmHWM; ru_maxrss would carry the
// launcher's peak across exec).
int64_t max_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:   123 kB"
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

// Seconds this (main, computing) thread spent runnable but without a core:
// other ranks or other programs held them (/proc/thread-self/schedstat).
double runqueue_seconds() {
  std::ifstream f("/proc/thread-self/schedstat");
  double on_cpu = 0, waiting = 0;
  f >> on_cpu >> waiting;
  return waiting * 1e-9;
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one, five;
  f >> one >> five;
  return one + " (1 min), " + five + " (5 min)";
}

// CPU time of every thread of this process (compute, OpenMP, Gloo).
double cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes / (1024.0 * 1024.0));
  return buf;
}

std::string kib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", bytes / 1024.0);
  return buf;
}

// ---------------------------------------------------------------------------
// Options

struct Options {
  bool worker = false;
  std::vector<int> ranks{1, 2, 4, 8};
  int64_t scan = 48, frame = 64;
  double step = 4;
  int iterations = 4, warmup = 1, threads = 1;
  int64_t chunk_size = 64, batch_size = 0;  // as `tessera reconstruct` (0: automatic)
  int64_t modes = 1;                         // probe modes of the reconstruction
  std::string data, launcher = "direct";
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_distributed: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--worker") o.worker = true;
    else if (a == "--ranks") o.ranks = parse_list(next());
    else if (a == "--scan") o.scan = std::stoll(next());
    else if (a == "--frame") o.frame = std::stoll(next());
    else if (a == "--step") o.step = std::stod(next());
    else if (a == "--iterations") o.iterations = std::stoi(next());
    else if (a == "--warmup") o.warmup = std::stoi(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--chunk-size") o.chunk_size = std::stoll(next());
    else if (a == "--batch-size") o.batch_size = std::stoll(next());
    else if (a == "--modes") o.modes = std::stoll(next());
    else if (a == "--data") o.data = next();
    else if (a == "--launcher") o.launcher = next();
    else {
      std::fprintf(stderr,
                   "usage: bench_distributed [--ranks 1,2,4,8] [--scan N] [--frame N] [--step px] "
                   "[--iterations N] [--warmup N] [--data FILE] [--launcher direct|torchrun] [--threads N]\n"
                   "       [--chunk-size N] [--batch-size N] [--modes N]\n"
                   "       bench_distributed --worker --data FILE [--iterations N] [--warmup N]\n");
      std::exit(2);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------
// Worker: one rank

// Per-rank figures gathered on rank 0 (one row per rank).
enum Field {
  kPatterns,
  kExtent,
  kNeighbours,
  kTensorPeak,     // live tensor bytes, high-water mark over the timed iterations, less the baseline
  kSetupPeak,      // ... while the engine was built
  kPredicted,      // memory model, total
  kPredObject,
  kPredProbe,
  kPredPatterns,
  kPredIntermediates,
  kPredExchange,
  kMaxRss,
  kSecondsPerIt,
  kWaitPerIt,      // halo + allreduce waits
  kHaloWaitPerIt,
  kSentPerIt,      // Communicator::bytes_sent
  kPredSentPerIt,  // predict_tile_bytes_sent * steps
  kEngineSentPerIt,  // HaloExchange counts * element bytes * steps
  kAllreducePerIt,   // allreduce payload per iteration (not in bytes_sent)
  kCpuPerIt,         // CPU seconds of the process per iteration
  kRunqPerIt,        // seconds runnable without a core per iteration
  kFields
};

int worker(const Options& o) {
  using namespace tessera;
  const int threads = configure_threads(o.threads > 0 && !std::getenv("OMP_NUM_THREADS") ? o.threads : 0);
  const auto env = comm::DistributedEnv::from_environment();
  std::shared_ptr<comm::Communicator> comm;
  if (env.distributed()) comm = comm::Communicator::create(env, torch::kCPU, std::chrono::seconds(120));
  const int K = env.world_size, me = env.rank;

  auto problem = ScanProblem::from_cxi(o.data);
  ReconstructionSettings s;
  s.iterations = o.iterations + o.warmup;
  s.quiet = true;
  s.checkpoint_every = 0;
  s.threads = threads;
  s.chunk_size = o.chunk_size;
  s.batch_size = o.batch_size;
  s.probe_modes = o.modes;

  const int64_t baseline = g_live.load();
  g_peak.store(baseline);
  Reconstruction rec(problem, s, comm);
  const int64_t setup_peak = g_peak.load() - baseline;

  for (int i = 0; i < o.warmup; ++i) rec.iterate();
  g_peak.store(g_live.load());
  const int64_t sent0 = comm ? comm->bytes_sent() : 0;
  const double halo0 = rec.exchange().wait_seconds();
  double seconds = 0, wait = 0;
  const double cpu0 = cpu_seconds(), runq0 = runqueue_seconds();
  for (int i = 0; i < o.iterations; ++i) {
    const auto st = rec.iterate();
    seconds += st.seconds;
    wait += st.wait_seconds;
  }
  const double cpu = cpu_seconds() - cpu0, runq = runqueue_seconds() - runq0;
  const double n = o.iterations;
  const int64_t sent = comm ? comm->bytes_sent() - sent0 : 0;
  const double halo_wait = rec.exchange().wait_seconds() - halo0;

  const auto& tiling = rec.tiling();
  const auto& scan = rec.problem().scan;
  const int64_t N = scan.num_positions();
  const int64_t steps = (N + rec.batch_size() - 1) / rec.batch_size();
  MemoryModelInputs in;
  in.chunk_size = s.chunk_size;
  in.real_bytes = 4;
  in.optimizer_state_copies = 2;  // Adam
  in.probe_modes = o.modes;
  in.batch_size = rec.batch_size();
  const int64_t complex_bytes = 2 * in.real_bytes;

  auto row = torch::zeros({K, kFields}, torch::kFloat64);
  auto r = row[me];
  double patterns = 0, extent = 0, neighbours = 0, predicted_sent = 0;
  TileMemory pred;
  for (int k : rec.local_tiles()) {
    const Tile& t = tiling.tile(k);
    patterns += static_cast<double>(t.positions.size());
    extent += static_cast<double>(t.extent.area());
    neighbours += static_cast<double>(tiling.neighbours(k).size());
    const auto m = predict_tile_memory(tiling, k, scan.frame_h, scan.frame_w, in);
    pred.object += m.object;
    pred.probe += m.probe;
    pred.patterns += m.patterns;
    pred.intermediates = std::max(pred.intermediates, m.intermediates);  // one chunk at a time
    pred.exchange += m.exchange;
    predicted_sent += static_cast<double>(predict_tile_bytes_sent(tiling, k, in) * steps);
  }
  const double probe_elements = static_cast<double>(rec.probe().numel());
  // The engine's count includes the probe allreduce; bytes_sent does not.
  const double engine_sent = (static_cast<double>(rec.remote_elements_per_step()) - (K > 1 ? probe_elements : 0)) *
                             static_cast<double>(complex_bytes * steps);
  // Per step: the probe gradient (complex) and the loss (one double).
  const double allreduce = K > 1 ? static_cast<double>(steps) * (probe_elements * complex_bytes + 8) : 0;
  const std::vector<double> values = {patterns,
                                      extent,
                                      neighbours,
                                      static_cast<double>(g_peak.load() - baseline),
                                      static_cast<double>(setup_peak),
                                      static_cast<double>(pred.total()),
                                      static_cast<double>(pred.object),
                                      static_cast<double>(pred.probe),
                                      static_cast<double>(pred.patterns),
                                      static_cast<double>(pred.intermediates),
                                      static_cast<double>(pred.exchange),
                                      static_cast<double>(max_rss_bytes()),
                                      seconds / n,
                                      wait / n,
                                      halo_wait / n,
                                      static_cast<double>(sent) / n,
                                      predicted_sent,
                                      engine_sent,
                                      allreduce,
                                      cpu / n,
                                      runq / n};
  for (int f = 0; f < kFields; ++f) r[f] = values[f];
  if (comm) comm->allreduce_sum(row).wait();
  if (me != 0) return 0;

  auto a = row.accessor<double, 2>();
  const auto whole = predict_undecomposed_memory(scan, in);
  std::printf("K=%d: %lld patterns of %lldx%lld, object %lldx%lld px, tile grid %dx%d, %zu halo links, batch %lld "
              "(%lld steps/iteration), %d thread(s) per rank, %d timed iterations after %d warm-up\n",
              K, static_cast<long long>(N), static_cast<long long>(scan.frame_h),
              static_cast<long long>(scan.frame_w), static_cast<long long>(scan.object_h),
              static_cast<long long>(scan.object_w), tiling.tiles_y(), tiling.tiles_x(), tiling.links().size(),
              static_cast<long long>(rec.batch_size()), static_cast<long long>(steps), threads, o.iterations,
              o.warmup);
  std::printf("  undecomposed model: %s MiB\n", mib(static_cast<double>(whole.total())).c_str());
  std::printf("  %4s %5s %6s %3s | %9s %9s %6s %9s %8s | %7s %7s %6s %6s %6s %6s | %9s %9s %9s %9s\n", "rank",
              "pats", "extent", "nbr", "tensorMiB", "modelMiB", "meas/m", "setupMiB", "rssMiB", "s/it", "cpu s/it",
              "wait%", "halo%", "runq%", "sleep%", "sentKiB", "modelKiB", "engineKiB", "allredKiB");
  double max_s = 0, max_peak = 0, max_pred = 0, max_rss = 0, sum_wait_frac = 0, max_wait_frac = 0, sum_sent = 0,
         sum_pred_sent = 0, sum_engine = 0, sum_halo_frac = 0, max_sent = 0, max_pred_sent = 0, sum_cpu = 0,
         max_ratio = 0, min_ratio = 1e30, sum_runq = 0, sum_sleep = 0, max_sleep = 0;
  for (int k = 0; k < K; ++k) {
    const double wf = a[k][kWaitPerIt] / a[k][kSecondsPerIt], hf = a[k][kHaloWaitPerIt] / a[k][kSecondsPerIt];
    const double ratio = a[k][kTensorPeak] / a[k][kPredicted];
    const double rq = a[k][kRunqPerIt] / a[k][kSecondsPerIt];
    // Off-core without wanting a core: asleep, i.e. blocked on a message.
    const double sl = std::max(0.0, 1.0 - (a[k][kCpuPerIt] + a[k][kRunqPerIt]) / a[k][kSecondsPerIt]);
    sum_runq += rq;
    sum_sleep += sl;
    max_sleep = std::max(max_sleep, sl);
    std::printf("  %4d %5.0f %6.0f %3.0f | %9s %9s %6.2f %9s %8s | %7.4f %7.4f %5.1f%% %5.1f%% %5.1f%% %5.1f%% | %9s %9s "
                "%9s %9s\n",
                k, a[k][kPatterns], a[k][kExtent], a[k][kNeighbours], mib(a[k][kTensorPeak]).c_str(),
                mib(a[k][kPredicted]).c_str(), ratio, mib(a[k][kSetupPeak]).c_str(), mib(a[k][kMaxRss]).c_str(),
                a[k][kSecondsPerIt], a[k][kCpuPerIt], 100 * wf, 100 * hf, 100 * rq, 100 * sl,
                kib(a[k][kSentPerIt]).c_str(),
                kib(a[k][kPredSentPerIt]).c_str(), kib(a[k][kEngineSentPerIt]).c_str(),
                kib(a[k][kAllreducePerIt]).c_str());
    max_s = std::max(max_s, a[k][kSecondsPerIt]);
    max_peak = std::max(max_peak, a[k][kTensorPeak]);
    max_pred = std::max(max_pred, a[k][kPredicted]);
    max_ratio = std::max(max_ratio, ratio);
    min_ratio = std::min(min_ratio, ratio);
    max_rss = std::max(max_rss, a[k][kMaxRss]);
    sum_wait_frac += wf;
    sum_halo_frac += hf;
    max_wait_frac = std::max(max_wait_frac, wf);
    sum_sent += a[k][kSentPerIt];
    sum_pred_sent += a[k][kPredSentPerIt];
    sum_engine += a[k][kEngineSentPerIt];
    max_sent = std::max(max_sent, a[k][kSentPerIt]);
    max_pred_sent = std::max(max_pred_sent, a[k][kPredSentPerIt]);
    sum_cpu += a[k][kCpuPerIt];
  }
  // Cores left idle: on an oversubscribed machine a blocked rank hands its
  // core to another, so wall-clock waits overstate what communication costs.
  const double cores = std::min<double>(static_cast<double>(K) * threads,
                                        std::max(1u, std::thread::hardware_concurrency()));
  const double idle = std::max(0.0, 1.0 - sum_cpu / (max_s * cores));
  // Model components of the rank with the largest prediction.
  int top = 0;
  for (int k = 1; k < K; ++k)
    if (a[k][kPredicted] > a[top][kPredicted]) top = k;
  std::printf("  model for rank %d: object+grad+state %s, probe %s, patterns %s, intermediates %s, exchange %s MiB\n",
              top, mib(a[top][kPredObject]).c_str(), mib(a[top][kPredProbe]).c_str(),
              mib(a[top][kPredPatterns]).c_str(), mib(a[top][kPredIntermediates]).c_str(),
              mib(a[top][kPredExchange]).c_str());
  std::printf("  %.0f core(s) for the job: %.1f%% of their time not used by it; load average %s\n", cores, 100 * idle,
              load_average().c_str());
  std::printf("SUMMARY K=%d s_per_it=%.4f tensor_peak_mib=%s model_peak_mib=%s meas_over_model=%.2f-%.2f rss_mib=%s "
              "wait_pct_mean=%.1f wait_pct_max=%.1f halo_wait_pct_mean=%.1f runq_pct_mean=%.1f sleep_pct_mean=%.1f "
              "sleep_pct_max=%.1f idle_pct=%.1f sent_kib_mean=%s "
              "sent_kib_max=%s model_kib_mean=%s model_kib_max=%s engine_kib_mean=%s allreduce_kib=%s\n",
              K, max_s, mib(max_peak).c_str(), mib(max_pred).c_str(), min_ratio, max_ratio, mib(max_rss).c_str(),
              100 * sum_wait_frac / K, 100 * max_wait_frac, 100 * sum_halo_frac / K, 100 * sum_runq / K,
              100 * sum_sleep / K, 100 * max_sleep, 100 * idle,
              kib(sum_sent / K).c_str(), kib(max_sent).c_str(), kib(sum_pred_sent / K).c_str(),
              kib(max_pred_sent).c_str(), kib(sum_engine / K).c_str(), kib(a[0][kAllreducePerIt]).c_str());
  std::fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------
// Driver

using tessera::child_process::Child;
using tessera::child_process::read_file;

// Ranks stay in the benchmark's process group, so that Ctrl-C stops them too.
Child spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const std::string& log) {
  return tessera::child_process::spawn(argv, env, log, {}, /*own_process_group=*/false);
}

int driver(const Options& o) {
  char tmpl[] = "/tmp/tessera_bench_dist_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::string data = o.data;
  if (data.empty()) {
    tessera::SimulationSettings s;
    s.scan_y = s.scan_x = o.scan;
    s.frame = o.frame;
    s.step_px = o.step;
    data = dir + "/sample.cxi";
    tessera::configure_threads(2);
    tessera::write_cxi(data, tessera::simulate(s));
  }
  std::printf("bench_distributed: %s, launcher %s, ranks", data.c_str(), o.launcher.c_str());
  for (int K : o.ranks) std::printf(" %d", K);
  std::printf(", %u hardware threads\n\n", std::thread::hardware_concurrency());
  std::fflush(stdout);

  const std::string exe = tessera::child_process::self_exe();
  std::vector<std::string> worker_args{"--worker",     "--data",
                                       data,           "--iterations",
                                       std::to_string(o.iterations), "--warmup",
                                       std::to_string(o.warmup),     "--chunk-size",
                                       std::to_string(o.chunk_size), "--batch-size",
                                       std::to_string(o.batch_size), "--modes",
                                       std::to_string(o.modes)};
  std::vector<std::string> summaries;
  for (int K : o.ranks) {
    std::vector<Child> ranks;
    const std::map<std::string, std::string> threads{{"OMP_NUM_THREADS", std::to_string(o.threads)}};
    if (o.launcher == "torchrun") {
      std::vector<std::string> argv{"torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=" + std::to_string(K),
                                    "--redirects", "1", "--tee", "1", "--no_python", exe};
      argv.insert(argv.end(), worker_args.begin(), worker_args.end());
      ranks.push_back(spawn(argv, threads, dir + "/torchrun_" + std::to_string(K) + ".log"));
    } else {
      const std::string port = std::to_string(tessera::child_process::free_port());
      for (int r = 0; r < K; ++r) {
        auto env = threads;
        env["RANK"] = std::to_string(r);
        env["LOCAL_RANK"] = std::to_string(r);
        env["WORLD_SIZE"] = std::to_string(K);
        env["MASTER_ADDR"] = "127.0.0.1";
        env["MASTER_PORT"] = port;
        std::vector<std::string> argv{exe};
        argv.insert(argv.end(), worker_args.begin(), worker_args.end());
        ranks.push_back(spawn(argv, env, dir + "/K" + std::to_string(K) + "_rank" + std::to_string(r) + ".log"));
      }
    }
    std::vector<Child*> waiting;
    for (auto& c : ranks) waiting.push_back(&c);
    tessera::child_process::wait_all(waiting);
    bool ok = true;
    for (const auto& c : ranks) ok = ok && c.pid > 0 && c.status && WIFEXITED(*c.status) && WEXITSTATUS(*c.status) == 0;
    std::string out = read_file(ranks.front().log);
    if (!ok) {
      std::printf("K=%d FAILED\n", K);
      for (const auto& c : ranks)
        std::printf("--- %s (%s)\n%s\n", c.log.c_str(), tessera::child_process::describe_status(c.status).c_str(),
                    read_file(c.log).c_str());
      continue;
    }
    // torchrun prefixes each line with [default0]: (rank 0 only prints).
    std::stringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
      const auto p = line.find("]:");
      if (line.rfind("[default", 0) == 0 && p != std::string::npos) line = line.substr(p + 2);
      if (line.rfind("SUMMARY", 0) == 0)
        summaries.push_back(line);
      else if (!line.empty() && line[0] != '[')
        std::printf("%s\n", line.c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::printf(
      "Summary. s/it, MiB and *Max: max over ranks; wait%%, halo%%, runq%%, sleep%%, sentKiB, modelKiB: mean over "
      "ranks.\n  wait%%: wall time blocked in the halo exchange and allreduces (halo%%: the halo part); runq%%: "
      "runnable without a core\n  (oversubscription, other programs); sleep%%: off-core and not runnable = blocked "
      "on a message; idle%%: the job's cores not\n  used by it. KiB per rank per iteration: sent = "
      "Communicator::bytes_sent (isend), model = predict_tile_bytes_sent,\n  allred = allreduce payload (probe "
      "gradient + loss; not in bytes_sent).\n");
  std::printf("  %3s %8s %10s %10s %10s %8s | %6s %8s %6s %6s %6s %8s %6s | %9s %9s %9s %9s %8s\n", "K", "s/it",
              "tensorMiB", "modelMiB", "meas/model", "rssMiB", "wait%", "wait%max", "halo%", "runq%", "sleep%",
              "sleep%max", "idle%", "sentKiB", "modelKiB", "sentMax", "modelMax", "allred");
  for (const auto& s : summaries) {
    std::map<std::string, std::string> kv;
    std::stringstream ss(s);
    std::string item;
    while (ss >> item) {
      const auto eq = item.find('=');
      if (eq != std::string::npos) kv[item.substr(0, eq)] = item.substr(eq + 1);
    }
    std::printf("  %3s %8s %10s %10s %10s %8s | %6s %8s %6s %6s %6s %8s %6s | %9s %9s %9s %9s %8s\n",
                kv["K"].c_str(), kv["s_per_it"].c_str(), kv["tensor_peak_mib"].c_str(), kv["model_peak_mib"].c_str(),
                kv["meas_over_model"].c_str(), kv["rss_mib"].c_str(), kv["wait_pct_mean"].c_str(),
                kv["wait_pct_max"].c_str(), kv["halo_wait_pct_mean"].c_str(), kv["runq_pct_mean"].c_str(),
                kv["sleep_pct_mean"].c_str(), kv["sleep_pct_max"].c_str(), kv["idle_pct"].c_str(),
                kv["sent_kib_mean"].c_str(), kv["model_kib_mean"].c_str(), kv["sent_kib_max"].c_str(),
                kv["model_kib_max"].c_str(), kv["allreduce_kib"].c_str());
  }
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  install_counting_allocator();
  const Options o = parse(argc, argv);
  try {
    if (o.worker) {
      if (o.data.empty()) {
        std::fprintf(stderr, "bench_distributed --worker needs --data\n");
        return 2;
      }
      return worker(o);
    }
    return driver(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_distributed: error: %s\n", e.what());
    return 1;
  }
}
