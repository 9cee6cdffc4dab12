#include "src/comm/failure_text.h"

#include <c10/util/Exception.h>

#include <cctype>
#include <regex>

#include "src/error.h"

namespace tessera::comm::detail {

using ::tessera::detail::concat;
using std::chrono::milliseconds;

namespace {

milliseconds elapsed_since(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t);
}

}  // namespace

std::string describe(const OpInfo& op) {
  switch (op.kind) {
    case OpKind::Send:
      return concat("isend of ", op.bytes, " bytes to rank ", op.peer, " (tag ", op.tag, ")");
    case OpKind::Recv:
      return concat("irecv of ", op.bytes, " bytes from rank ", op.peer, " (tag ", op.tag, ")");
    case OpKind::Allreduce:
      return concat("allreduce_sum of ", op.bytes, " bytes");
    case OpKind::Broadcast:
      return concat("broadcast of ", op.bytes, " bytes from root rank ", op.peer);
    case OpKind::Barrier:
      return "barrier";
  }
  return "operation";
}

bool is_p2p(OpKind k) { return k == OpKind::Send || k == OpKind::Recv; }

// c10::Error::what() appends a C++ backtrace: keep the message only, on one line.
std::string message_of(const std::exception_ptr& eptr, size_t max_chars) {
  std::string s;
  try {
    std::rethrow_exception(eptr);
  } catch (const c10::Error& e) {
    s = e.what_without_backtrace();
  } catch (const std::exception& e) {
    s = e.what();
  } catch (...) {
    s = "unknown exception";
  }
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  // Gloo prefixes its messages with "[./gloo/transport/tcp/pair.cc:598] ".
  static const std::regex location(R"(\[[^\] ]*\.(cc|cpp|h|hpp):[0-9]+\] ?)");
  s = std::regex_replace(s, location, "");
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Cause classify(const std::string& reason) {
  const std::string s = lower(reason);
  for (const char* w : {"timed out", "timeout", "time out"})
    if (s.find(w) != std::string::npos) return Cause::Timeout;
  for (const char* w : {"closed", "reset", "broken pipe", "refused", "eof", "end of file",
                        "connection lost", "abort"})
    if (s.find(w) != std::string::npos) return Cause::Lost;
  return Cause::Other;
}

// "1, 3-5, 9" (at most `max_items` items).
std::string rank_list(const std::vector<int>& ranks, size_t max_items) {
  std::string out;
  size_t items = 0;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (items == max_items) return out + ", ...";
    if (!out.empty()) out += ", ";
    out += std::to_string(ranks[i]);
    if (j > i) out += (j == i + 1 ? ", " : "-") + std::to_string(ranks[j]);
    ++items;
    i = j + 1;
  }
  return out;
}

std::string failure_report(const OpInfo& op, const std::string& reason, std::chrono::milliseconds timeout,
                           const std::string& backend) {
  const auto ms = elapsed_since(op.posted).count();
  const Cause cause = classify(reason);
  std::string why;
  if (is_p2p(op.kind)) {
    const int p = op.peer;
    if (cause == Cause::Timeout)
      why = concat("rank ", p, " made no progress within the timeout of ", timeout.count(),
                   " ms (rank ", p, " hangs, is stalled, or died without closing its connections)");
    else if (cause == Cause::Lost)
      why = concat("the connection to rank ", p, " was lost (rank ", p, " died or exited)");
    else
      why = concat("communication with rank ", p, " failed");
  } else {
    if (cause == Cause::Timeout)
      why = concat("a peer rank is missing: no progress within the timeout of ", timeout.count(),
                   " ms (a rank hangs, is stalled, or died)");
    else if (cause == Cause::Lost)
      why = "a peer rank is missing: a connection was lost (a rank died or exited)";
    else
      why = "a peer rank is missing or failed";
  }
  const std::string report =
      concat(describe(op), " failed after ", ms, " ms: ", why, " [", backend, ": ", reason, "]");
  return report;
}

std::string diagnosis_text(const DiagnosisFacts& f) {
  std::string text;
  if (!f.store_reached) {
    if (!f.finished)
      text = concat("The rendezvous store at ", f.store_address, " (hosted by ", f.store_host,
                    ") did not answer within ", f.limit.count(), " ms, so the other ranks' state "
                    "is unknown (", f.store_host, " may hang).");
    else
      text = concat("The rendezvous store at ", f.store_address, " cannot be reached (",
                    f.store_error, "): its host, ", f.store_host,
                    ", has probably died or exited.");
  }
  std::vector<int> gone, alive, unknown;
  std::string reports;
  int listed = 0, reported = 0;
  for (int q = 0; q < f.world_size; ++q) {
    if (q == f.rank) continue;
    const auto& r = f.reports[static_cast<size_t>(q)];
    if (!r) {
      switch (f.liveness[static_cast<size_t>(q)]) {
        case Liveness::Gone: gone.push_back(q); break;
        case Liveness::Alive: alive.push_back(q); break;
        case Liveness::Unknown: unknown.push_back(q); break;
      }
      continue;
    }
    ++reported;
    if (listed < 4) {
      reports += concat(listed ? "; " : "", "rank ", q, ": ", r->substr(0, 240));
      ++listed;
    }
  }
  const auto ranks = [](const std::vector<int>& v) {
    return concat(v.size() > 1 ? "Ranks " : "Rank ", rank_list(v));
  };
  const auto space = [&] { return text.empty() ? "" : " "; };
  if (reported > 0)
    text += concat(space(), "Other ranks reported errors (", reported, "): ", reports,
                   reported > listed ? "; ..." : "", ".");
  if (!gone.empty())
    text += concat(space(), ranks(gone), " died or exited",
                   f.store_error.empty() ? " without reporting an error"
                                               : " (whether after reporting an error is unknown)",
                   ": nothing accepts connections at ", gone.size() > 1 ? "their" : "its",
                   " liveness address any more.");
  if (!alive.empty())
    text += concat(space(), ranks(alive), " still ", alive.size() > 1 ? "run" : "runs",
                   " but reported no error (hung, stalled, or not yet affected).");
  if (!unknown.empty())
    text += concat(space(), "No error report from rank", unknown.size() > 1 ? "s " : " ",
                   rank_list(unknown), " (dead, hung, or not yet affected).");
  if (f.store_reached && gone.empty() && alive.empty() && unknown.empty())
    text += concat(space(), "Every other rank reported an error.");
  if (f.store_reached && !f.store_error.empty())
    text += concat(" (The store at ", f.store_address, " went away meanwhile: its host, ",
                   f.store_host, ", has exited or died.)");
  return text;
}


}  // namespace tessera::comm::detail
