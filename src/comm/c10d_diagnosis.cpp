// After a failure: this rank's report to the store, hanging up on its peers,
// and what the others reported or what their liveness shows.
#include <algorithm>
#include <thread>

#include "src/comm/c10d_group.h"

namespace tessera::comm::detail {

namespace {

// Runs f on a detached thread and waits at most `limit` for it: a store whose
// host hangs would otherwise block a diagnosis forever.  f must own (capture by
// value) everything it touches.  Returns false when f did not finish in time.
bool run_bounded(milliseconds limit, std::function<void()> f) {
  struct Done {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto done = std::make_shared<Done>();
  std::thread([done, f = std::move(f)] {
    try {
      f();
    } catch (...) {
    }
    std::lock_guard<std::mutex> lk(done->m);
    done->done = true;
    done->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lk(done->m);
  return done->cv.wait_for(lk, limit, [&] { return done->done; });
}

}  // namespace

std::string GroupImpl::failure_message(const OpInfo& op, const std::string& reason) {
  const std::string report = failure_report(op, reason, timeout_, backend_);
  return concat("rank ", env_.rank, ": ", report, ". ", diagnose(report));
}

// Publishes this rank's failure in the store, hangs up on every peer (so
// that ranks blocked on this one, rather than on the culprit, fail now and
// report while the store is still up), then collects the others' reports
// until every rank has either reported or is known to be gone, or the grace
// period ends.  A rank that did not report is named as dead only on evidence:
// its liveness socket refuses connections (its process has ended).  A silent
// rank whose process still exists is a hung or slow one.  Rank 0, when it
// hosts the store, also waits until the ranks that reported have read the
// others' reports, since its exit takes the store down.  Runs once per group.
std::string GroupImpl::diagnose(const std::string& own_report) {
  std::lock_guard<std::mutex> guard(diag_mutex_);
  if (diagnosis_) return *diagnosis_;

  struct Result {
    std::mutex m;
    std::vector<std::optional<std::string>> reports;
    std::vector<Liveness> liveness;  // of the ranks that did not report, at the last probe
    bool store_reached = false;      // at least one full pass over the reports
    std::string store_error;
  };
  auto result = std::make_shared<Result>();
  const auto size = static_cast<size_t>(env_.world_size);
  result->reports.resize(size);
  result->liveness.assign(size, Liveness::Unknown);
  // Long enough that, on a loaded machine, the ranks that a death also broke
  // report too; ranks still silent then are named as what the probe says.
  const milliseconds grace = std::clamp(timeout_ / 5, milliseconds(20), milliseconds(1000));
  const milliseconds limit = grace + milliseconds(2000);
  const bool hosts_store = !env_.use_agent_store && env_.rank == 0;
  const bool finished = run_bounded(
      limit, [store = store_, rank = env_.rank, size, grace, result, hosts_store,
              addresses = peer_addresses_, hang_up = hang_up_, own = own_report.substr(0, 400)] {
        const auto key = [](const char* what, size_t q) { return concat("diag/", what, "/", q); };
        bool store_ok = true;
        Clock::time_point store_failed;
        // Every store access goes through here: once the store failed (its
        // host is gone), what was read before is kept and probing goes on.
        const auto with_store = [&](const std::function<void()>& f) {
          if (!store_ok) return false;
          try {
            f();
            return true;
          } catch (...) {
            store_ok = false;
            store_failed = Clock::now();
            std::lock_guard<std::mutex> lk(result->m);
            result->store_error = message_of(std::current_exception(), 200);
            return false;
          }
        };
        const auto read_report = [&](size_t q) {
          with_store([&] {
            if (!store->check({key("failed", q)})) return;
            const auto v = store->get(key("failed", q));
            std::lock_guard<std::mutex> lk(result->m);
            result->reports[q] = std::string(v.begin(), v.end());
          });
        };
        const auto reported = [&](size_t q) {
          std::lock_guard<std::mutex> lk(result->m);
          return result->reports[q].has_value();
        };

        with_store([&] { store->set(key("failed", static_cast<size_t>(rank)), bytes_of(own)); });
        if (hang_up) hang_up();
        const auto until = Clock::now() + grace;
        std::vector<Liveness> liveness(size, Liveness::Unknown);
        for (;;) {
          for (size_t q = 0; q < size; ++q)
            if (static_cast<int>(q) != rank && !reported(q)) read_report(q);
          if (store_ok) {
            std::lock_guard<std::mutex> lk(result->m);
            result->store_reached = true;
          }
          // Probe the silent ranks (a bounded number per pass: each costs a socket).
          std::vector<size_t> silent;
          std::vector<std::string> silent_addresses;
          for (size_t q = 0; q < size && silent.size() < 256; ++q) {
            if (static_cast<int>(q) == rank || reported(q) || liveness[q] == Liveness::Gone) continue;
            silent.push_back(q);
            silent_addresses.push_back(q < addresses.size() ? addresses[q] : std::string());
          }
          const auto probed = probe_liveness(silent_addresses, std::min(milliseconds(200), grace));
          for (size_t i = 0; i < silent.size(); ++i) {
            // A probe that got no answer in time (a loaded machine) says
            // less than an earlier one that did.
            if (probed[i] != Liveness::Unknown) liveness[silent[i]] = probed[i];
            // It may have reported and exited between the read and the probe.
            if (probed[i] == Liveness::Gone) read_report(silent[i]);
          }
          {
            std::lock_guard<std::mutex> lk(result->m);
            result->liveness = liveness;
          }
          bool settled = true;
          for (size_t q = 0; q < size && settled; ++q) {
            if (static_cast<int>(q) == rank || liveness[q] == Liveness::Gone) continue;
            if (!reported(q)) {
              settled = false;
            } else if (hosts_store) {
              with_store([&] { settled = store->check({key("read", q)}); });
            }
          }
          // Without the store no report can come; probe a little longer only
          // in case a process that just died is still closing its sockets.
          const bool pointless = !store_ok && Clock::now() >= store_failed + milliseconds(100);
          if (settled || pointless || Clock::now() >= until) break;
          std::this_thread::sleep_for(std::min(milliseconds(50), grace));
        }
        with_store([&] { store->set(key("read", static_cast<size_t>(rank)), bytes_of("1")); });
      });

  DiagnosisFacts facts;
  {
    std::lock_guard<std::mutex> lk(result->m);
    facts.rank = env_.rank;
    facts.world_size = env_.world_size;
    facts.reports = result->reports;
    facts.liveness = result->liveness;
    facts.store_reached = result->store_reached;
    facts.store_error = result->store_error;
  }
  facts.finished = finished;
  facts.limit = limit;
  facts.store_address = store_address();
  facts.store_host = store_host();
  diagnosis_ = diagnosis_text(facts);
  return *diagnosis_;
}

}  // namespace tessera::comm::detail
