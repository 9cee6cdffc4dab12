// Distributed reconstruction (issue 4), end to end through the `tessera`
// binary: torchrun launches with 1, 2 and 4 ranks and a 16-rank run whose
// tiles are smaller than the probe window must reproduce the single-process,
// undecomposed reconstruction; a rank killed mid-run must make the others
// exit non-zero in time, naming it, and leave the last checkpoint readable.
//
// Every run uses Gloo on CPU with OMP_NUM_THREADS=1 per rank (the ranks are
// oversubscribed on small machines). The reference is plain
// `tessera reconstruct` with one tile in one process. The 1e-5 equality is
// asserted with --precision double (the decomposed runs then match to the
// result file's complex64 precision); float runs are measured and held to
// the float reference's own distance from the exact result (see below).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/tiling.h"
#include "tests/child_process.h"
#include "train/result_file.h"
#include "train/scan_problem.h"

namespace tessera {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// TESSERA_TOOL=/path/to/tessera: the same tests against another build (tests/tool_run.h).
const std::string kTessera = [] {
  const char* other = std::getenv("TESSERA_TOOL");
  return other && *other ? std::string(other) : std::string(TESSERA_BINARY_DIR "/train/tessera");
}();

using child_process::Child;
using child_process::describe_status;
using child_process::free_port;
using child_process::read_file;
using child_process::spawn;
using child_process::wait_all;

std::optional<std::string> find_torchrun() { return child_process::find_on_path("torchrun"); }

struct RunResult {
  std::string status, output;
  double seconds = 0;
};

// Runs a command to completion (killed after `limit`).
RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
              const std::string& log, milliseconds limit) {
  const auto start = Clock::now();
  Child c = spawn(argv, env, log);
  EXPECT_GT(c.pid, 0) << "cannot start " << argv[0];
  wait_all({&c}, start + limit);
  RunResult r;
  r.status = describe_status(c.status);
  r.output = read_file(log);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

double relative_difference(const torch::Tensor& reference, const torch::Tensor& value) {
  auto a = reference.to(torch::kComplexDouble), b = value.to(torch::kComplexDouble);
  const double num = (a - b).abs().pow(2).sum().sqrt().item<double>();
  const double den = a.abs().pow(2).sum().sqrt().item<double>();
  return num / den;
}

// ---------------------------------------------------------------------------

// One simulated sample and its single-process references, shared by every test.
class Distributed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/tessera_dist_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    ASSERT_NE(::mkdtemp(buf.data()), nullptr);
    dir_ = buf.data();
    sample_ = dir_ + "/sample.cxi";
    // 10 x 10 positions, 32 x 32 frames, step 4: a 74 x 74 px object.
    const auto sim = run({kTessera, "simulate", "-o", sample_, "--scan", "10", "--frame", "32", "--step", "4"},
                         {{"OMP_NUM_THREADS", "1"}}, dir_ + "/simulate.log", milliseconds(60000));
    ASSERT_EQ(sim.status, "exit code 0") << sim.output;
  }
  static void TearDownTestSuite() {
    if (!dir_.empty() && !std::getenv("TESSERA_KEEP_TEST_FILES")) std::filesystem::remove_all(dir_);
  }

  // Arguments of `tessera reconstruct` shared by every run.
  static std::vector<std::string> reconstruct_args(const std::string& output, int iterations,
                                                   const std::string& precision, int checkpoint_every = 0,
                                                   int timeout_s = 30) {
    return {kTessera, "reconstruct", sample_, "-o", output, "-i", std::to_string(iterations),
            "--precision", precision, "--no-previews", "--checkpoint-every", std::to_string(checkpoint_every),
            "--timeout", std::to_string(timeout_s)};
  }

  // Ranks launched directly (no torchrun, which would kill the survivors
  // itself): RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT as a batch system sets them.
  static std::vector<Child> launch_direct(int world, const std::vector<std::string>& args, const std::string& log) {
    const std::string port = std::to_string(free_port());
    std::vector<Child> ranks;
    for (int r = 0; r < world; ++r) {
      ranks.push_back(spawn(args,
                            {{"RANK", std::to_string(r)},
                             {"LOCAL_RANK", std::to_string(r)},
                             {"WORLD_SIZE", std::to_string(world)},
                             {"MASTER_ADDR", "127.0.0.1"},
                             {"MASTER_PORT", port},
                             {"OMP_NUM_THREADS", "1"}},
                            log + ".rank" + std::to_string(r) + ".log"));
      EXPECT_GT(ranks.back().pid, 0) << "cannot start " << args[0];
    }
    return ranks;
  }

  // The single-process, undecomposed result (one tile), computed once per setting.
  static std::string reference(int iterations, const std::string& precision) {
    const std::string key = std::to_string(iterations) + "_" + precision;
    auto it = references_.find(key);
    if (it != references_.end()) return it->second;
    const std::string out = dir_ + "/reference_" + key + ".h5";
    auto args = reconstruct_args(out, iterations, precision);
    args.insert(args.end(), {"--tiles", "1"});
    const auto r = run(args, {{"OMP_NUM_THREADS", "1"}}, dir_ + "/reference_" + key + ".log", milliseconds(120000));
    EXPECT_EQ(r.status, "exit code 0") << r.output;
    references_[key] = out;
    return out;
  }

  // `torchrun --standalone --nproc_per_node=K ... tessera reconstruct`, but on a
  // free port: --standalone always takes 29400, which a concurrently running
  // test (ctest -j2) may hold.
  static RunResult torchrun(int ranks, const std::string& output, int iterations, const std::string& precision,
                            milliseconds limit) {
    const auto launcher = find_torchrun();
    const std::string endpoint = "--rdzv_endpoint=localhost:" + std::to_string(free_port());
    std::vector<std::string> argv{*launcher,      "--rdzv_backend=c10d", endpoint,
                                  "--rdzv_id=tessera-test-" + std::to_string(::getpid()), "--nnodes=1",
                                  "--nproc_per_node=" + std::to_string(ranks),
                                  // Debian's torchrun on Python 3.11 fails without these.
                                  "--redirects", "1", "--tee", "1", "--monitor_interval=1", "--no_python"};
    const auto args = reconstruct_args(output, iterations, precision);
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, {{"OMP_NUM_THREADS", "1"}}, output + ".log", limit);
    // Debian's torchrun 1.13 agent sometimes fails to close its own rendezvous
    // on a loaded machine (RendezvousConnectionError, after every worker has
    // finished). That is the launcher, not tessera: launch once more.
    if (r.status != "exit code 0" && r.output.find("RendezvousConnectionError") != std::string::npos)
      r = run(argv, {{"OMP_NUM_THREADS", "1"}}, output + ".log", limit);
    return r;
  }

  struct Comparison {
    double object = 1, probe = 1, loss = 1;
    int iteration = -1;
  };
  static Comparison compare(const std::string& reference_file, const std::string& file) {
    Comparison c;
    const auto ref = read_result(reference_file);
    const auto got = read_result(file);
    EXPECT_EQ(got.object.sizes(), ref.object.sizes());
    EXPECT_EQ(got.probe.sizes(), ref.probe.sizes());
    if (got.object.sizes() != ref.object.sizes() || got.probe.sizes() != ref.probe.sizes()) return c;
    c.object = relative_difference(ref.object, got.object);
    c.probe = relative_difference(ref.probe, got.probe);
    c.iteration = got.iteration;
    EXPECT_EQ(got.loss.size(), ref.loss.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(got.loss.size(), ref.loss.size()); ++i)
      worst = std::max(worst, std::abs(got.loss[i] - ref.loss[i]) / std::abs(ref.loss[i]));
    c.loss = worst;
    return c;
  }

  static std::string dir_, sample_;
  static std::map<std::string, std::string> references_;
};

std::string Distributed::dir_, Distributed::sample_;
std::map<std::string, std::string> Distributed::references_;

constexpr double kTolerance = 1e-5;

// Float runs are reported against the float reference and asserted against
// the exact (double) result. Rounding differences grow during the
// reconstruction (Adam divides each step by the running RMS of the gradient,
// so tiny gradient differences can become full-size steps; the loss jumps
// when probe refinement starts): on this sample the undecomposed float run
// itself was 5e-4 to 7e-3 away from the double one after 20 iterations (as
// the phantom changed), and a decomposed float run 5e-6 to 1e-4 away from the
// undecomposed float run (summation order only), so a float run cannot be
// held to 1e-5 reliably. (With the default Adam epsilon of session 13, which
// keeps tiny gradients from becoming full-size steps, both are 5e-7 to 8e-7.)
// A decomposed
// float run must be as close to the exact result as the undecomposed float
// run is (up to a factor of 2), which a missing or doubled halo term misses
// by orders of magnitude.
constexpr double kFloatExcessAllowed = 2.0;

class TorchrunRanks : public Distributed, public ::testing::WithParamInterface<int> {};

// 1, 2 and 4 ranks, 20 iterations of Adam with probe refinement from
// iteration 1: in double precision they must equal the undecomposed run to
// 1e-5 (they do to the result file's complex64 precision); in float they are
// measured against it and against the exact result.
TEST_P(TorchrunRanks, EqualsSingleProcessUndecomposed) {
  if (!find_torchrun()) GTEST_SKIP() << "torchrun not found";
  const int K = GetParam();
  constexpr int iterations = 20;
  const auto ref_double = reference(iterations, "double");
  const auto ref_float = reference(iterations, "float");

  const std::string out = dir_ + "/torchrun_" + std::to_string(K) + "_double.h5";
  const auto r = torchrun(K, out, iterations, "double", milliseconds(120000));
  ASSERT_EQ(r.status, "exit code 0") << r.output;
  // One result file, written by rank 0; progress printed by rank 0 only.
  EXPECT_NE(r.output.find("iter   20/20"), std::string::npos) << r.output;
  for (int rank = 1; rank < K; ++rank)
    EXPECT_EQ(r.output.find("[default" + std::to_string(rank) + "]:iter"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(std::to_string(K) + " tile(s)"), std::string::npos) << r.output;
  const auto d = compare(ref_double, out);
  std::cout << "[ measured ] K=" << K << " ranks, double, " << iterations << " iterations (" << r.seconds
            << " s with torchrun start-up): relative difference to the undecomposed run: object " << d.object
            << ", probe " << d.probe << ", worst loss " << d.loss << std::endl;
  EXPECT_EQ(d.iteration, iterations);
  EXPECT_LE(d.object, kTolerance);
  EXPECT_LE(d.probe, kTolerance);

  const std::string out_float = dir_ + "/torchrun_" + std::to_string(K) + "_float.h5";
  const auto f = torchrun(K, out_float, iterations, "float", milliseconds(120000));
  ASSERT_EQ(f.status, "exit code 0") << f.output;
  const auto to_float_ref = compare(ref_float, out_float);
  const auto to_exact = compare(ref_double, out_float);
  const auto ref_error = compare(ref_double, ref_float);
  std::cout << "[ measured ] K=" << K << " ranks, float: relative difference to the undecomposed float run: object "
            << to_float_ref.object << ", probe " << to_float_ref.probe << "; to the exact (double) result: object "
            << to_exact.object << ", probe " << to_exact.probe << " (the undecomposed float run: object "
            << ref_error.object << ", probe " << ref_error.probe << ")" << std::endl;
  RecordProperty("float_object_relative_difference", std::to_string(to_float_ref.object));
  RecordProperty("float_probe_relative_difference", std::to_string(to_float_ref.probe));
  EXPECT_EQ(to_float_ref.iteration, iterations);
  EXPECT_LE(to_exact.object, std::max(kTolerance, kFloatExcessAllowed * ref_error.object));
  EXPECT_LE(to_exact.probe, std::max(kTolerance, kFloatExcessAllowed * ref_error.probe));
  if (K == 1) {  // WORLD_SIZE=1: a plain single process
    EXPECT_EQ(to_float_ref.object, 0.0);
    EXPECT_EQ(to_float_ref.probe, 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(OneTwoFour, TorchrunRanks, ::testing::Values(1, 2, 4),
                         [](const ::testing::TestParamInfo<int>& p) { return std::to_string(p.param) + "ranks"; });

// Fan-out: 16 ranks on a 4 x 4 grid whose tiles are narrower than the probe
// window, so that halos reach beyond the 8 direct neighbours (double, as above).
TEST_F(Distributed, SixteenRanksWithTilesSmallerThanTheWindow) {
  if (!find_torchrun()) GTEST_SKIP() << "torchrun not found";
  constexpr int K = 16, iterations = 5;
  {
    const auto problem = ScanProblem::from_cxi(sample_);
    const auto tiling = Tiling::automatic(problem.scan, K);
    ASSERT_EQ(tiling.num_tiles(), K);
    size_t widest_fan_out = 0;
    for (int k = 0; k < K; ++k) {
      const Tile& t = tiling.tile(k);
      EXPECT_LT(t.owned.h, problem.scan.frame_h) << "tile " << k << " owns " << t.owned.str();
      EXPECT_LT(t.owned.w, problem.scan.frame_w) << "tile " << k << " owns " << t.owned.str();
      std::set<int> receivers;
      for (const auto& l : tiling.outgoing(k)) receivers.insert(l.to);
      widest_fan_out = std::max(widest_fan_out, receivers.size());
    }
    std::cout << "[ measured ] 16 tiles of " << tiling.tiles_y() << " x " << tiling.tiles_x() << ", "
              << tiling.links().size() << " halo links, a halo reaches up to " << widest_fan_out << " tiles"
              << std::endl;
    ASSERT_GT(widest_fan_out, 8u);
  }
  const auto ref = reference(iterations, "double");
  const std::string out = dir_ + "/torchrun_16.h5";
  const auto r = torchrun(K, out, iterations, "double", milliseconds(150000));
  ASSERT_EQ(r.status, "exit code 0") << r.output;
  EXPECT_NE(r.output.find("16 tile(s)"), std::string::npos) << r.output;
  const auto c = compare(ref, out);
  std::cout << "[ measured ] K=16 ranks, double, " << iterations << " iterations (" << r.seconds
            << " s with torchrun start-up): relative difference object " << c.object << ", probe " << c.probe
            << std::endl;
  EXPECT_EQ(c.iteration, iterations);
  EXPECT_LE(c.object, kTolerance);
  EXPECT_LE(c.probe, kTolerance);
}

// A rank of a 3-rank job dies (SIGKILL) or hangs (SIGSTOP) after the first
// checkpoint; --timeout 5.
struct Failure {
  int victim;
  int signal;
};

void PrintTo(const Failure& f, std::ostream* os) {
  *os << "rank " << f.victim << (f.signal == SIGSTOP ? " stopped" : " killed");
}

class RankFailure : public Distributed, public ::testing::WithParamInterface<Failure> {};

TEST_P(RankFailure, OthersExitInTimeNamingItAndTheCheckpointSurvives) {
  const auto [victim, sig] = GetParam();
  const bool hang = sig == SIGSTOP;
  constexpr int world = 3, timeout_s = 5, checkpoint_every = 2;
  const std::string name = "failure_" + std::to_string(victim) + "_" + std::to_string(sig);
  const std::string out = dir_ + "/" + name + ".h5";
  // Double precision, so that the resumed runs below can be compared tightly.
  auto ranks = launch_direct(world, reconstruct_args(out, 100000, "double", checkpoint_every, timeout_s),
                             dir_ + "/" + name);
  // Wait for the first checkpoint; every rank must still be running.
  const auto start = Clock::now();
  while (!std::filesystem::exists(out) && Clock::now() < start + std::chrono::seconds(60))
    std::this_thread::sleep_for(milliseconds(20));
  std::this_thread::sleep_for(milliseconds(200));
  std::vector<Child*> all;
  for (auto& c : ranks) all.push_back(&c);
  for (auto& c : ranks) {
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) c.status = status;
  }
  bool ok = std::filesystem::exists(out);
  for (auto& c : ranks) ok = ok && !c.status;
  if (!ok) {
    wait_all(all, Clock::now());
    std::string logs;
    for (auto& c : ranks) logs += describe_status(c.status) + ":\n" + read_file(c.log) + "\n";
    FAIL() << "no checkpoint within 60 s, or a rank ended early\n" << logs;
  }

  ASSERT_EQ(::kill(ranks[victim].pid, sig), 0);
  const auto killed = Clock::now();
  std::vector<Child*> survivors;
  for (int r = 0; r < world; ++r)
    if (r != victim) survivors.push_back(&ranks[r]);
  wait_all(survivors, killed + std::chrono::seconds(timeout_s + 20));
  wait_all({&ranks[victim]}, Clock::now());  // a stopped victim is killed here

  // The diagnosis must name the victim whatever the survivors were doing when
  // it died: as dead (its process is gone) or as alive but silent (hung).
  // Under load a survivor may be slow to report, or (rank 0) may already
  // have exited, so the victim may be listed with others.
  const std::string listing_victim = "Ranks? ([0-9]+(, |-))*" + std::to_string(victim) + "((, |-)[0-9]+)*";
  const std::regex names_victim(listing_victim + (hang ? " still runs? but reported no error" : " died or exited"));
  for (Child* c : survivors) {
    const std::string log = read_file(c->log);
    SCOPED_TRACE(c->log + ":\n" + log);
    ASSERT_TRUE(c->status.has_value()) << "a survivor hung";
    EXPECT_TRUE(WIFEXITED(*c->status) && WEXITSTATUS(*c->status) != 0) << describe_status(c->status);
    const double seconds = std::chrono::duration<double>(c->ended - killed).count();
    std::cout << "[ measured ] rank " << victim << (hang ? " stopped" : " killed") << ": a survivor exited "
              << seconds << " s later (timeout " << timeout_s << " s)" << std::endl;
    // A dead peer's sockets close: noticed at once. A hung one: after the
    // timeout, plus at most 2.5 s of diagnosis through the store.
    EXPECT_LT(seconds, hang ? timeout_s + 3.0 : static_cast<double>(timeout_s));
    if (hang) {
      EXPECT_GE(seconds, timeout_s * 0.9);
    }
    const auto error = log.find("error:");
    ASSERT_NE(error, std::string::npos);
    EXPECT_TRUE(std::regex_search(log.substr(error), names_victim))
        << "the message does not name rank " << victim << (hang ? " as hung" : " as dead");
  }

  // The last checkpoint is complete: readable, a whole number of checkpoint
  // intervals, and it holds every tile's optimiser state.
  ReconstructionResult saved;
  ASSERT_NO_THROW(saved = read_result(out));
  EXPECT_GE(saved.iteration, checkpoint_every);
  EXPECT_EQ(saved.iteration % checkpoint_every, 0);
  EXPECT_EQ(saved.loss.size(), static_cast<size_t>(saved.iteration));
  EXPECT_TRUE(torch::isfinite(torch::view_as_real(saved.object)).all().item<bool>());
  for (int k = 0; k < world; ++k) {
    EXPECT_EQ(saved.optimizer_states.count("tile_" + std::to_string(k) + "/object"), 1u) << "tile " << k;
    EXPECT_EQ(saved.optimizer_states.count("tile_" + std::to_string(k) + "/probe"), 1u) << "tile " << k;
  }
  if (victim != 1 || hang) return;

  // It resumes: 3 ranks continue for 2 iterations and agree with one process
  // holding the same 3 tiles, resumed from the same file.
  const int target = saved.iteration + 2;
  const std::string resumed = dir_ + "/" + name + "_resumed.h5", single = dir_ + "/" + name + "_single.h5";
  auto args = reconstruct_args(resumed, target, "double");
  args.insert(args.end(), {"--resume", out});
  auto again = launch_direct(world, args, dir_ + "/" + name + "_resumed");
  std::vector<Child*> again_ptrs;
  for (auto& c : again) again_ptrs.push_back(&c);
  wait_all(again_ptrs, Clock::now() + std::chrono::seconds(60));
  for (auto& c : again) ASSERT_EQ(describe_status(c.status), "exit code 0") << read_file(c.log);
  auto single_args = reconstruct_args(single, target, "double");
  single_args.insert(single_args.end(), {"--resume", out, "--tiles", "3"});
  const auto s = run(single_args, {{"OMP_NUM_THREADS", "1"}}, single + ".log", milliseconds(60000));
  ASSERT_EQ(s.status, "exit code 0") << s.output;
  const auto c = compare(single, resumed);
  EXPECT_EQ(c.iteration, target);
  EXPECT_LE(c.object, kTolerance);
  EXPECT_LE(c.probe, kTolerance);
}

INSTANTIATE_TEST_SUITE_P(KilledOrHung, RankFailure,
                         ::testing::Values(Failure{1, SIGKILL}, Failure{0, SIGKILL}, Failure{1, SIGSTOP}),
                         [](const ::testing::TestParamInfo<Failure>& p) {
                           return std::string(p.param.signal == SIGSTOP ? "Hung" : "Killed") + "Rank" +
                                  std::to_string(p.param.victim);
                         });

// Ranks that cannot start together (issue 14): each rank is launched with its
// own arguments; every rank must exit 1 (no abort, no timeout) with the
// failing rank's reason.
class SetupDisagreement : public Distributed {
 protected:
  std::vector<Child> launch(const std::vector<std::vector<std::string>>& args_per_rank, const std::string& log) {
    const std::string port = std::to_string(free_port());
    const int world = static_cast<int>(args_per_rank.size());
    std::vector<Child> ranks;
    for (int r = 0; r < world; ++r)
      ranks.push_back(spawn(args_per_rank[r],
                            {{"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)},
                             {"WORLD_SIZE", std::to_string(world)}, {"MASTER_ADDR", "127.0.0.1"},
                             {"MASTER_PORT", port}, {"OMP_NUM_THREADS", "1"}},
                            log + ".rank" + std::to_string(r) + ".log"));
    std::vector<Child*> all;
    for (auto& c : ranks) all.push_back(&c);
    wait_all(all, Clock::now() + std::chrono::seconds(90));
    return ranks;
  }
};

TEST_F(SetupDisagreement, EveryRankReportsTheSettingThatDiffers) {
  auto args0 = reconstruct_args(dir_ + "/disagree.h5", 2, "float", 0, 20);
  auto args1 = args0;
  args1.insert(args1.end(), {"--modes", "2"});
  const auto ranks = launch({args0, args1}, dir_ + "/disagree");
  for (const auto& c : ranks) {
    const std::string log = read_file(c.log);
    EXPECT_EQ(describe_status(c.status), "exit code 1") << log;
    EXPECT_NE(log.find("probe_modes"), std::string::npos) << log;
    EXPECT_EQ(log.find("EnforceNotMet"), std::string::npos) << log;
  }
}

TEST_F(SetupDisagreement, EveryRankReportsOneRanksDataError) {
  auto args0 = reconstruct_args(dir_ + "/missing.h5", 2, "float", 0, 20);
  auto args1 = args0;
  args1[2] = dir_ + "/no_such_file.cxi";
  const auto ranks = launch({args0, args1}, dir_ + "/missing");
  for (const auto& c : ranks) {
    const std::string log = read_file(c.log);
    EXPECT_EQ(describe_status(c.status), "exit code 1") << log;
    EXPECT_NE(log.find("no_such_file.cxi"), std::string::npos) << log;
  }
}

}  // namespace
}  // namespace tessera
