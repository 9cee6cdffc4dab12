#pragma once
// What a failed communication is called in messages: the operation, why it
// failed, and what the other ranks said. Plain text from plain facts, so that
// every message can be tested without starting a process (tests/test_comm.cpp).
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "src/comm/liveness.h"

namespace tessera::comm::detail {

using Clock = std::chrono::steady_clock;

enum class OpKind { Send, Recv, Allreduce, Broadcast, Barrier };

struct OpInfo {
  OpKind kind;
  int peer = -1;  // dst/src, or the root of a broadcast
  int tag = 0;
  int64_t bytes = 0;
  Clock::time_point posted = Clock::now();
};

// "isend of 64 bytes to rank 3 (tag 5)", ...
std::string describe(const OpInfo& op);
bool is_p2p(OpKind k);

// The message of an exception on one line, without c10's backtrace or Gloo's
// source locations, at most max_chars long.
std::string message_of(const std::exception_ptr& eptr, size_t max_chars = 300);
std::string lower(std::string s);

// What a backend's error text says happened.
enum class Cause { Timeout, Lost, Other };
Cause classify(const std::string& reason);

// "1, 3-5, 9" (at most max_items items).
std::string rank_list(const std::vector<int>& ranks, size_t max_items = 16);

// What failed and why: "irecv of 64 bytes from rank 1 (tag 2) failed after
// 12 ms: the connection to rank 1 was lost (...) [gloo: reason]".
std::string failure_report(const OpInfo& op, const std::string& reason, std::chrono::milliseconds timeout,
                           const std::string& backend);

// What this rank learnt about the others after a failure (the store's
// reports, the liveness probes), and the sentence it makes.
struct DiagnosisFacts {
  int rank = 0, world_size = 0;
  std::vector<std::optional<std::string>> reports;  // by rank: the error it reported
  std::vector<Liveness> liveness;                   // by rank, of those that did not report
  bool store_reached = false;                       // at least one full pass over the reports
  std::string store_error;                          // why the store stopped answering, if it did
  bool finished = true;                             // the collection ended within its limit
  std::chrono::milliseconds limit{0};
  std::string store_address, store_host;
};
std::string diagnosis_text(const DiagnosisFacts& facts);

}  // namespace tessera::comm::detail
