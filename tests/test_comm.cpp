// Tests of src/comm: DistributedEnv parsing, the single-process communicator,
// rendezvous errors, and multi-process runs (torchrun-launched, and launched
// directly so that the survivors' own failure detection is what is tested).
//
// The multi-process tests run this very binary as the worker:
//   TESSERA_COMM_WORKER=1 <this binary> --gtest_filter=CommWorker.Run
// with TESSERA_COMM_SCENARIO = ring | die_p2p | die_allreduce | hang | relay,
// TESSERA_COMM_TIMEOUT_MS and TESSERA_COMM_VICTIM (the rank that dies/hangs).
// Without TESSERA_COMM_WORKER the worker test is skipped.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/comm/communicator.h"
#include "src/comm/default_device.h"
#include "src/comm/distributed_env.h"
#include "src/comm/liveness.h"
#include "src/error.h"
#include "tests/child_process.h"

namespace tessera::comm {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using child_process::Child;
using child_process::describe_status;
using child_process::exited_with_failure;
using child_process::free_port;
using child_process::read_file;
using child_process::self_exe;
using child_process::wait_all;

// What the worker reads; like a launcher's variables, never inherited.
const std::vector<std::string> kWorkerVars{"TESSERA_COMM_WORKER", "TESSERA_COMM_SCENARIO",
                                           "TESSERA_COMM_TIMEOUT_MS", "TESSERA_COMM_VICTIM"};

Child spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const std::string& log) {
  Child child = child_process::spawn(argv, env, log, kWorkerVars);
  EXPECT_GT(child.pid, 0) << "cannot start " << argv[0];
  return child;
}

std::optional<std::string> find_torchrun() { return child_process::find_on_path("torchrun"); }

// Sets environment variables for the lifetime of the object (nullptr: unset),
// clearing every launcher variable first; restores everything afterwards.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, const char*>& vars) {
    for (const auto& name : child_process::launcher_variables()) save_and_set(name, nullptr);
    for (const auto& name : kWorkerVars) save_and_set(name, nullptr);
    for (const auto& [name, value] : vars) save_and_set(name, value);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        unsetenv(it->first.c_str());
    }
  }

 private:
  void save_and_set(const std::string& name, const char* value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value)
      setenv(name.c_str(), value, 1);
    else
      unsetenv(name.c_str());
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

std::string temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/tessera_comm_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* dir = ::mkdtemp(buf.data());
  return dir ? std::string(dir) : std::string("/tmp");
}

std::map<std::string, std::string> worker_env(const std::string& scenario, milliseconds timeout,
                                              int victim = 1) {
  return {{"TESSERA_COMM_WORKER", "1"},
          {"TESSERA_COMM_SCENARIO", scenario},
          {"TESSERA_COMM_TIMEOUT_MS", std::to_string(timeout.count())},
          {"TESSERA_COMM_VICTIM", std::to_string(victim)},
          {"OMP_NUM_THREADS", "1"}};
}

const char* const kWorkerFilter = "--gtest_filter=CommWorker.Run";

// ---------------------------------------------------------------------------
// DistributedEnv

TEST(DefaultDevice, LocalRanksGpuWhenThereIsOne) {
  EXPECT_EQ(default_device(0, 0), "cpu");
  EXPECT_EQ(default_device(3, 0), "cpu");
  EXPECT_EQ(default_device(0, 4), "cuda:0");
  EXPECT_EQ(default_device(3, 4), "cuda:3");
  EXPECT_EQ(default_device(5, 1), "cuda:0");  // each rank sees only its own GPU
  try {
    default_device(5, 4);
    FAIL() << "LOCAL_RANK=5 with 4 GPUs must be refused";
  } catch (const SettingsError& e) {
    EXPECT_NE(std::string(e.what()).find("LOCAL_RANK=5"), std::string::npos) << e.what();
  }
  // This machine: what --device defaults to for a single process.
  const std::string expected = torch::cuda::device_count() > 0 ? "cuda:0" : "cpu";
  EXPECT_EQ(default_device(DistributedEnv{}), expected);
}

TEST(DistributedEnv, MissingVariablesMeanOneProcess) {
  ScopedEnv env({});
  const auto e = DistributedEnv::from_environment();
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.local_rank, 0);
  EXPECT_FALSE(e.distributed());
  EXPECT_FALSE(e.use_agent_store);
}

TEST(DistributedEnv, ParsesTorchrunVariables) {
  ScopedEnv env({{"RANK", "2"},
                 {"WORLD_SIZE", "4"},
                 {"LOCAL_RANK", "1"},
                 {"MASTER_ADDR", "10.1.2.3"},
                 {"MASTER_PORT", "29512"},
                 {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                 {"TORCHELASTIC_RESTART_COUNT", "3"}});
  const auto e = DistributedEnv::from_environment();
  EXPECT_EQ(e.rank, 2);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "10.1.2.3");
  EXPECT_EQ(e.master_port, 29512);
  EXPECT_TRUE(e.use_agent_store);
  EXPECT_EQ(e.restart_count, 3);
  EXPECT_TRUE(e.distributed());

  ScopedEnv env2({{"RANK", "0"},
                  {"WORLD_SIZE", "2"},
                  {"MASTER_ADDR", "localhost"},
                  {"MASTER_PORT", "1234"},
                  {"TORCHELASTIC_USE_AGENT_STORE", "False"}});
  const auto f = DistributedEnv::from_environment();
  EXPECT_FALSE(f.use_agent_store);
  EXPECT_EQ(f.local_rank, 0);
  EXPECT_EQ(f.restart_count, 0);
}

void expect_settings_error(const std::map<std::string, const char*>& vars,
                           const std::string& mentioned) {
  ScopedEnv env(vars);
  try {
    DistributedEnv::from_environment();
    ADD_FAILURE() << "no error; expected one mentioning " << mentioned;
  } catch (const SettingsError& e) {
    EXPECT_NE(std::string(e.what()).find(mentioned), std::string::npos) << e.what();
  }
}

TEST(DistributedEnv, MalformedValuesAreSettingsErrors) {
  const char* addr = "127.0.0.1";
  expect_settings_error({{"RANK", "abc"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"}},
                        "RANK='abc'");
  expect_settings_error({{"RANK", "1x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"}},
                        "RANK");
  expect_settings_error({{"RANK", "-1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"}},
                        "RANK");
  expect_settings_error({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"}},
                        "WORLD_SIZE=2");
  expect_settings_error({{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "WORLD_SIZE");
  expect_settings_error({{"RANK", "1"}}, "WORLD_SIZE");
  expect_settings_error({{"WORLD_SIZE", "2"}}, "RANK");
  expect_settings_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500"}}, "MASTER_ADDR");
  expect_settings_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "70000"}},
                        "MASTER_PORT");
  expect_settings_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"},
                         {"LOCAL_RANK", "zero"}},
                        "LOCAL_RANK");
  expect_settings_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"},
                         {"TORCHELASTIC_USE_AGENT_STORE", "maybe"}},
                        "TORCHELASTIC_USE_AGENT_STORE");
  expect_settings_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", addr}, {"MASTER_PORT", "1"},
                         {"TORCHELASTIC_RESTART_COUNT", "-2"}},
                        "TORCHELASTIC_RESTART_COUNT");
}

// ---------------------------------------------------------------------------
// One process: no store, no sockets.

TEST(SingleProcess, CollectivesAreIdentities) {
  auto comm = Communicator::create(DistributedEnv{}, torch::kCPU, milliseconds(2000));
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->timeout(), milliseconds(2000));

  auto x = torch::arange(12, torch::kFloat32).reshape({3, 4});
  const auto expected = x.clone();
  auto r = comm->allreduce_sum(x);
  EXPECT_TRUE(r.completed());
  r.wait();
  EXPECT_TRUE(torch::equal(x, expected));

  auto z = torch::randn({5}, torch::kComplexFloat);
  const auto z0 = z.clone();
  comm->allreduce_sum(z).wait();
  EXPECT_TRUE(torch::equal(z, z0));

  EXPECT_THROW(comm->allreduce_sum(torch::ones({2}, torch::kBool)), tessera::Error);
  EXPECT_THROW(comm->allreduce_sum(torch::ones({2}, torch::kBFloat16)), tessera::Error);

  comm->broadcast(x, 0);
  EXPECT_TRUE(torch::equal(x, expected));
  comm->barrier();
  EXPECT_THROW(comm->broadcast(x, 1), tessera::Error);
}

TEST(SingleProcess, MessagesToSelfMatchByTagInOrder) {
  auto comm = Communicator::create(DistributedEnv{}, torch::kCPU, milliseconds(2000));
  auto a = torch::full({4}, 1.0), b = torch::full({4}, 2.0), c = torch::full({4}, 3.0);
  auto ra = torch::zeros({4}), rb = torch::zeros({2, 2}), rc = torch::zeros({4});
  auto recv_b = comm->irecv(rb, 0, /*tag=*/7);  // posted before the send
  EXPECT_FALSE(recv_b.completed());
  comm->isend(a, 0, 5).wait();
  comm->isend(c, 0, 5).wait();
  comm->isend(b, 0, 7).wait();
  a.fill_(-1);  // the message was copied
  EXPECT_TRUE(recv_b.completed());
  comm->irecv(ra, 0, 5).wait();
  comm->irecv(rc, 0, 5).wait();
  recv_b.wait();
  EXPECT_TRUE(torch::equal(ra, torch::full({4}, 1.0)));
  EXPECT_TRUE(torch::equal(rc, torch::full({4}, 3.0)));
  EXPECT_TRUE(torch::equal(rb, torch::full({2, 2}, 2.0)));
  EXPECT_EQ(comm->bytes_sent(), 3 * 4 * 4);

  auto lonely = comm->irecv(torch::zeros({3}), 0, 9);
  EXPECT_THROW(lonely.wait(), CommunicationError);
  EXPECT_THROW(comm->isend(torch::zeros({5}), 0, 9), tessera::Error);  // does not fit
}

TEST(SingleProcess, RejectsBadArguments) {
  auto comm = Communicator::create(DistributedEnv{}, torch::kCPU, milliseconds(2000));
  auto t = torch::zeros({2});
  EXPECT_THROW(comm->isend(t, 1, 0), tessera::Error);
  EXPECT_THROW(comm->irecv(t, -1, 0), tessera::Error);
  EXPECT_THROW(comm->isend(t, 0, -3), tessera::Error);
  EXPECT_THROW(comm->isend(torch::Tensor(), 0, 0), tessera::Error);
  EXPECT_THROW(Communicator::create(DistributedEnv{}, torch::kCPU, milliseconds(0)), SettingsError);
  DistributedEnv bad;
  bad.rank = 3;
  bad.world_size = 2;
  EXPECT_THROW(Communicator::create(bad, torch::kCPU, milliseconds(1000)), SettingsError);
  EXPECT_EQ(Request().completed(), true);
  Request().wait();
}

// ---------------------------------------------------------------------------
// Rendezvous errors (in process)

DistributedEnv env_for(int rank, int world_size, int port) {
  DistributedEnv env;
  env.rank = rank;
  env.world_size = world_size;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  return env;
}

TEST(Rendezvous, BusyPortNamesTheAddress) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);

  const auto start = Clock::now();
  try {
    Communicator::create(env_for(0, 2, port), torch::kCPU, milliseconds(3000));
    ADD_FAILURE() << "rank 0 hosted a store on a busy port";
  } catch (const CommunicationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << msg;
    EXPECT_NE(msg.find("MASTER_PORT"), std::string::npos) << msg;
    EXPECT_NE(msg.find("in use"), std::string::npos) << msg;
  }
  EXPECT_LT(Clock::now() - start, milliseconds(3000));
  ::close(fd);
}

TEST(Rendezvous, UnreachableStoreTimesOut) {
  const int port = free_port();  // nobody listens there
  const auto start = Clock::now();
  try {
    Communicator::create(env_for(1, 2, port), torch::kCPU, milliseconds(1500));
    ADD_FAILURE() << "connected to a store that does not exist";
  } catch (const CommunicationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
  }
  // The error comes on time with either LibTorch: 2.x's own connect back-off
  // used to overshoot the timeout by up to 2.3 s, 1.13's whole-second
  // rounding by up to 1 s.
  const auto took = Clock::now() - start;
  EXPECT_GE(took, milliseconds(1400));
  EXPECT_LT(took, milliseconds(1500 + 1000));
}

TEST(Rendezvous, WaitForListenerSeesALateStoreAndGivesUpOnTime) {
  const int port = free_port();
  auto start = Clock::now();
  EXPECT_FALSE(detail::wait_for_listener("127.0.0.1", port, start + milliseconds(400)));
  auto took = Clock::now() - start;
  EXPECT_GE(took, milliseconds(400));
  EXPECT_LT(took, milliseconds(400 + 600));

  // A listener that appears after 300 ms is found within a pause (<= 100 ms).
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  std::thread late([&] {
    std::this_thread::sleep_for(milliseconds(300));
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(fd, 4), 0);
  });
  start = Clock::now();
  EXPECT_TRUE(detail::wait_for_listener("127.0.0.1", port, start + milliseconds(5000)));
  took = Clock::now() - start;
  late.join();
  EXPECT_GE(took, milliseconds(300));
  EXPECT_LT(took, milliseconds(300 + 1000));
  ::close(fd);
}

TEST(Rendezvous, MissingRanksAreNamed) {
  const int port = free_port();
  const auto start = Clock::now();
  try {
    Communicator::create(env_for(0, 3, port), torch::kCPU, milliseconds(1200));
    ADD_FAILURE() << "created a 3-rank group alone";
  } catch (const CommunicationError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ranks 1, 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("did not join"), std::string::npos) << msg;
  }
  EXPECT_LT(Clock::now() - start, milliseconds(1200 + 2500));
}

// ---------------------------------------------------------------------------
// The worker (runs only when launched by the tests below).

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

void log_line(const std::string& line) {
  std::cerr << "[worker] " << line << std::endl;
}

// Ring exchange with two tags per round (received in reverse order), a complex
// and a non-contiguous message, allreduce (real and complex, async), broadcast
// and barrier; every value is checked.
void run_ring(Communicator& comm) {
  const int r = comm.rank(), k = comm.size();
  const int right = (r + 1) % k, left = (r + k - 1) % k;
  int64_t sent = 0;
  for (int round = 0; round < 4; ++round) {
    auto a = torch::full({1000}, 100.0 * r + round);
    auto b = torch::full({3, 5}, -1.0 * r - round, torch::kFloat64);
    auto ra = torch::zeros({1000});
    auto rb_storage = torch::zeros({5, 3}, torch::kFloat64);
    auto rb = rb_storage.t();  // non-contiguous 3x5 view: staged
    auto recv_b = comm.irecv(rb, left, 2 * round + 1);
    auto recv_a = comm.irecv(ra, left, 2 * round);
    auto send_a = comm.isend(a, right, 2 * round);
    auto send_b = comm.isend(b, right, 2 * round + 1);
    sent += a.nbytes() + b.nbytes();
    recv_b.wait();
    recv_a.wait();
    send_a.wait();
    send_b.wait();
    ASSERT_TRUE(torch::equal(ra, torch::full({1000}, 100.0 * left + round))) << "round " << round;
    ASSERT_TRUE(torch::equal(rb, torch::full({3, 5}, -1.0 * left - round, torch::kFloat64)));
  }
  // Complex payload; completion polled with completed().
  auto z = torch::complex(torch::full({64}, 1.0 * r, torch::kFloat64), torch::full({64}, -2.0 * r, torch::kFloat64));
  auto rz = torch::zeros({64}, torch::kComplexDouble);
  auto recv_z = comm.irecv(rz, left, 1000);
  auto send_z = comm.isend(z, right, 1000);
  sent += z.nbytes();
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!(recv_z.completed() && send_z.completed()) && Clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(1));
  recv_z.wait();
  send_z.wait();
  ASSERT_TRUE(torch::equal(rz, torch::complex(torch::full({64}, 1.0 * left, torch::kFloat64),
                                               torch::full({64}, -2.0 * left, torch::kFloat64))));
  EXPECT_EQ(comm.bytes_sent(), sent);

  auto x = torch::full({257}, static_cast<float>(r + 1));
  auto y = torch::complex(torch::full({9}, 1.0 * r, torch::kFloat64), torch::ones({9}, torch::kFloat64));
  auto req_x = comm.allreduce_sum(x);
  auto req_y = comm.allreduce_sum(y);
  req_x.wait();
  req_y.wait();
  const double sum = k * (k + 1) / 2.0, rank_sum = k * (k - 1) / 2.0;
  ASSERT_TRUE(torch::equal(x, torch::full({257}, static_cast<float>(sum))));
  ASSERT_TRUE(torch::equal(y, torch::complex(torch::full({9}, rank_sum, torch::kFloat64), torch::full({9}, 1.0 * k, torch::kFloat64))));

  auto w = torch::full({2, 3}, r == k - 1 ? 42 : 0, torch::kInt64);
  comm.broadcast(w, k - 1);
  ASSERT_TRUE(torch::equal(w, torch::full({2, 3}, 42, torch::kInt64)));
  comm.barrier();
}

// Ring exchanges (or allreduces) until the victim dies or stops at round 3.
// The survivors must throw CommunicationError; they print how long the
// failing round took.
void run_failure(Communicator& comm, const std::string& scenario, int victim) {
  const int r = comm.rank(), k = comm.size();
  const int right = (r + 1) % k, left = (r + k - 1) % k;
  for (int round = 0; round < 20; ++round) {
    if (r == victim && round == 3) {
      log_line("rank " + std::to_string(r) + ": " + (scenario == "hang" ? "stopping" : "dying") +
               " now");
      if (scenario == "hang") ::raise(SIGSTOP);
      std::_Exit(9);
    }
    const auto round_start = Clock::now();
    try {
      if (scenario == "relay") {
        // Victim -> rank 0 -> the others: rank 0 forwards only what it got,
        // so when the victim dies the others wait on rank 0, not on the victim.
        auto t = torch::full({1000}, static_cast<float>(round));
        if (r == victim) {
          comm.isend(t, 0, round).wait();
        } else if (r == 0) {
          comm.irecv(t, victim, round).wait();
          for (int q = 1; q < k; ++q)
            if (q != victim) comm.isend(t, q, round).wait();
        } else {
          comm.irecv(t, 0, round).wait();
        }
        ASSERT_TRUE(torch::equal(t, torch::full({1000}, static_cast<float>(round))));
      } else if (scenario == "die_allreduce") {
        auto t = torch::ones({1000});
        comm.allreduce_sum(t).wait();
        ASSERT_TRUE(torch::equal(t, torch::full({1000}, static_cast<float>(k))));
      } else {
        auto out = torch::full({1000}, static_cast<float>(r));
        auto in = torch::zeros({1000});
        auto recv = comm.irecv(in, left, round);
        auto send = comm.isend(out, right, round);
        recv.wait();
        send.wait();
        ASSERT_TRUE(torch::equal(in, torch::full({1000}, static_cast<float>(left))));
      }
    } catch (const CommunicationError&) {
      const auto ms =
          std::chrono::duration_cast<milliseconds>(Clock::now() - round_start).count();
      log_line("rank " + std::to_string(r) + ": round " + std::to_string(round) +
               " failed, detected after " + std::to_string(ms) + " ms");
      throw;
    }
  }
  log_line("rank " + std::to_string(r) + ": no failure detected");
}

TEST(CommWorker, Run) {
  if (!std::getenv("TESSERA_COMM_WORKER"))
    GTEST_SKIP() << "runs only as a worker process launched by the multi-process tests";
  const std::string scenario =
      std::getenv("TESSERA_COMM_SCENARIO") ? std::getenv("TESSERA_COMM_SCENARIO") : "ring";
  const milliseconds timeout(env_int("TESSERA_COMM_TIMEOUT_MS", 5000));
  const int victim = env_int("TESSERA_COMM_VICTIM", 1);
  const auto env = DistributedEnv::from_environment();
  log_line(env.describe() + ", scenario " + scenario);
  const auto start = Clock::now();
  try {
    {
      auto comm = Communicator::create(env, torch::kCPU, timeout);
      if (scenario == "ring")
        run_ring(*comm);
      else
        run_failure(*comm, scenario, victim);
    }  // the communicator is destroyed here, or while the error unwinds
    log_line("rank " + std::to_string(env.rank) + ": ok");
  } catch (const CommunicationError& e) {
    const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
    log_line("rank " + std::to_string(env.rank) + ": CommunicationError (exiting " +
             std::to_string(ms) + " ms after start): " + e.what());
    FAIL() << "CommunicationError";
  }
}

// ---------------------------------------------------------------------------
// Multi-process runs

struct TorchrunResult {
  Child child;
  std::string output;
  milliseconds took{0};
};

TorchrunResult run_torchrun(const std::vector<std::string>& launcher_args,
                            const std::map<std::string, std::string>& env, milliseconds limit) {
  TorchrunResult result;
  const auto torchrun = find_torchrun();
  if (!torchrun) return result;
  // Debian's torchrun on Python 3.11 needs --redirects/--tee.
  std::vector<std::string> argv{*torchrun, "--redirects", "1", "--tee", "1"};
  argv.insert(argv.end(), launcher_args.begin(), launcher_args.end());
  for (const std::string& a : {std::string("--no_python"), self_exe(), std::string(kWorkerFilter)})
    argv.push_back(a);
  const std::string dir = temp_dir();
  const auto start = Clock::now();
  result.child = spawn(argv, env, dir + "/torchrun.log");
  wait_all({&result.child}, start + limit);
  result.took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  result.output = read_file(dir + "/torchrun.log");
  std::filesystem::remove_all(dir);
  return result;
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1))
    ++n;
  return n;
}

TEST(Torchrun, TwoRanksStandaloneRing) {
  if (!find_torchrun()) GTEST_SKIP() << "torchrun not found";
  const auto r = run_torchrun({"--standalone", "--nnodes=1", "--nproc_per_node=2"},
                              worker_env("ring", milliseconds(20000)), milliseconds(50000));
  EXPECT_EQ(describe_status(r.child.status), "exit code 0") << r.output;
  EXPECT_EQ(count(r.output, ": ok"), 2u) << r.output;
  // Debian's torchrun (LibTorch 1.13) leaves the store to rank 0 under
  // --standalone; torchrun 2.x hosts it in its agent (it sets
  // TORCHELASTIC_USE_AGENT_STORE). Either way every rank must find it.
  const bool rank0 = count(r.output, "hosted by rank 0") == 2;
  const bool agent = count(r.output, "hosted by the torchrun agent") == 2;
  EXPECT_TRUE(rank0 || agent) << r.output;
}

TEST(Torchrun, FourRanksAgentStoreRing) {
  if (!find_torchrun()) GTEST_SKIP() << "torchrun not found";
  // Static rendezvous (no --standalone): the torchrun agent hosts the store
  // at MASTER_ADDR:MASTER_PORT and sets TORCHELASTIC_USE_AGENT_STORE=True.
  const int port = free_port();
  const auto r = run_torchrun({"--nnodes=1", "--node_rank=0", "--nproc_per_node=4",
                               "--master_addr=127.0.0.1", "--master_port=" + std::to_string(port)},
                              worker_env("ring", milliseconds(20000)), milliseconds(55000));
  EXPECT_EQ(describe_status(r.child.status), "exit code 0") << r.output;
  EXPECT_EQ(count(r.output, ": ok"), 4u) << r.output;
  EXPECT_NE(r.output.find("hosted by the torchrun agent"), std::string::npos) << r.output;
}

TEST(Torchrun, DeadPeerFailsTheJob) {
  if (!find_torchrun()) GTEST_SKIP() << "torchrun not found";
  const milliseconds timeout(3000);
  const auto r = run_torchrun({"--standalone", "--nnodes=1", "--nproc_per_node=3",
                               "--monitor_interval=1"},
                              worker_env("die_p2p", timeout), milliseconds(50000));
  ASSERT_TRUE(r.child.status.has_value()) << "torchrun hung\n" << r.output;
  EXPECT_TRUE(exited_with_failure(r.child)) << describe_status(r.child.status) << "\n" << r.output;
  // Python and worker start-up dominate; the failure itself must not wait for more than the timeout.
  EXPECT_LT(r.took, milliseconds(25000) + timeout) << r.output;
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1: dying now"), std::string::npos) << r.output;
}

// Three workers of `scenario` launched directly, RANK etc. set by hand;
// each writes dir/rankN.log.
std::vector<Child> spawn_three_workers(const std::string& scenario, milliseconds timeout, const std::string& dir) {
  const int port = free_port();
  std::vector<Child> children(3);
  for (int rank = 0; rank < 3; ++rank) {
    auto env = worker_env(scenario, timeout);
    env["RANK"] = std::to_string(rank);
    env["LOCAL_RANK"] = std::to_string(rank);
    env["WORLD_SIZE"] = "3";
    env["MASTER_ADDR"] = "127.0.0.1";
    env["MASTER_PORT"] = std::to_string(port);
    children[rank] = spawn({self_exe(), kWorkerFilter}, env, dir + "/rank" + std::to_string(rank) + ".log");
  }
  return children;
}

// Three workers launched directly (no torchrun, which would kill the
// survivors itself): the survivors must notice the victim on their own.
void expect_survivors_detect(const std::string& scenario, milliseconds timeout) {
  const std::string dir = temp_dir();
  const auto start = Clock::now();
  std::vector<Child> children = spawn_three_workers(scenario, timeout, dir);
  // Survivors first; the victim of "hang" stays stopped until we kill it.
  wait_all({&children[0], &children[2]}, start + milliseconds(30000) + timeout);
  wait_all({&children[1]}, Clock::now() + milliseconds(scenario == "hang" ? 0 : 5000));

  std::vector<std::string> logs;
  for (const Child& c : children) logs.push_back(read_file(c.log));
  std::filesystem::remove_all(dir);
  const std::string& victim_log = logs[1];
  EXPECT_NE(victim_log.find(scenario == "hang" ? "stopping now" : "dying now"), std::string::npos)
      << victim_log;
  if (scenario != "hang") {
    EXPECT_EQ(describe_status(children[1].status), "exit code 9") << victim_log;
  }

  const std::regex detected("detected after ([0-9]+) ms");
  for (int rank : {0, 2}) {
    const std::string& log = logs[rank];
    SCOPED_TRACE("rank " + std::to_string(rank) + " log:\n" + log);
    EXPECT_TRUE(exited_with_failure(children[rank])) << describe_status(children[rank].status);
    EXPECT_NE(log.find("CommunicationError"), std::string::npos);
    // The diagnosis names the victim as dead (its process is gone) or as hung
    // (alive but silent), whichever survivor noticed first; it may list the
    // other survivor too when that one has exited already.
    const std::regex names_victim(std::string("Ranks? ([0-9]+(, |-))*1((, |-)[0-9]+)*") +
                                  (scenario == "hang" ? " still runs? but reported no error" : " died or exited"));
    EXPECT_TRUE(std::regex_search(log, names_victim)) << "rank 1 not named as " << (scenario == "hang" ? "hung" : "dead");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(log, m, detected));
    const long ms = std::stol(m[1]);
    EXPECT_LE(ms, timeout.count() + 1500) << "detection took " << ms << " ms";
    if (scenario != "hang") {
      EXPECT_LT(ms, timeout.count()) << "a dead peer should be noticed at once";
    }
  }
}

TEST(DirectLaunch, DeadPeerInPointToPoint) {
  expect_survivors_detect("die_p2p", milliseconds(3000));
}

TEST(DirectLaunch, DeadPeerInAllreduce) {
  expect_survivors_detect("die_allreduce", milliseconds(3000));
}

TEST(DirectLaunch, HungPeerTimesOut) {
  expect_survivors_detect("hang", milliseconds(2000));
}

// The failure hang-up (c10d_adapter.cpp, GlooGroup::hang_up): rank 0's
// receive from the dead rank 1 fails at once; rank 2, blocked on rank 0
// rather than on the dead rank, must fail because rank 0 hangs up on it, and
// in time for rank 0's diagnosis (which waits at most 1 s for the others'
// reports while rank 0 is still up) to quote rank 2's report. Without the
// hang-up rank 2 learns nothing until rank 0 exits, after that wait, and
// then cannot report any more (rank 0 hosted the store).
TEST(DirectLaunch, FailedRankHangsUpOnItsPeers) {
  const milliseconds timeout(20000);
  const std::string dir = temp_dir();
  const auto start = Clock::now();
  std::vector<Child> children = spawn_three_workers("relay", timeout, dir);
  wait_all({&children[0], &children[1], &children[2]}, start + milliseconds(30000) + timeout);
  std::vector<std::string> logs;
  for (const Child& c : children) logs.push_back(read_file(c.log));
  std::filesystem::remove_all(dir);
  const std::string all = "rank 0:\n" + logs[0] + "\nrank 1:\n" + logs[1] + "\nrank 2:\n" + logs[2];
  ASSERT_NE(logs[1].find("dying now"), std::string::npos) << all;
  for (int rank : {0, 2}) {
    EXPECT_TRUE(exited_with_failure(children[rank])) << "rank " << rank << ": "
                                                     << describe_status(children[rank].status) << "\n" << all;
    EXPECT_NE(logs[rank].find("CommunicationError"), std::string::npos) << all;
  }
  // Rank 2's own failure names rank 0, the rank that hung up on it.
  EXPECT_TRUE(std::regex_search(logs[2], std::regex("from rank 0 \\(tag 3\\) failed after [0-9]+ ms: "
                                                    "the connection to rank 0 was lost")))
      << all;
  // Rank 0's diagnosis quotes rank 2's report: rank 2 failed while rank 0 was still up.
  EXPECT_TRUE(std::regex_search(logs[0], std::regex("Other ranks reported errors \\(1\\): rank 2: ")))
      << all;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(logs[2], m, std::regex("detected after ([0-9]+) ms"))) << all;
  EXPECT_LT(std::stol(m[1]), timeout.count() / 2) << all;
}

}  // namespace
}  // namespace tessera::comm
