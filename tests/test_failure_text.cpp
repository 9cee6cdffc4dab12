// The words of communication failures (src/comm/failure_text.h) and the
// message tags (src/comm/message_tags.h), checked without starting a process.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/comm/failure_text.h"
#include "src/comm/message_tags.h"

using namespace tessera::comm;
using namespace tessera::comm::detail;
using std::chrono::milliseconds;

TEST(FailureText, OperationsAndCausesAreNamed) {
  EXPECT_EQ(describe({OpKind::Send, 3, 5, 64}), "isend of 64 bytes to rank 3 (tag 5)");
  EXPECT_EQ(describe({OpKind::Recv, 1, 2, 8}), "irecv of 8 bytes from rank 1 (tag 2)");
  EXPECT_EQ(describe({OpKind::Allreduce, -1, 0, 16}), "allreduce_sum of 16 bytes");
  EXPECT_EQ(describe({OpKind::Broadcast, 0, 0, 4}), "broadcast of 4 bytes from root rank 0");
  EXPECT_EQ(describe({OpKind::Barrier}), "barrier");
  EXPECT_EQ(classify("Timed out waiting 60000ms for recv operation"), Cause::Timeout);
  EXPECT_EQ(classify("Connection reset by peer"), Cause::Lost);
  EXPECT_EQ(classify("Connection closed by peer [127.0.0.1]:4242"), Cause::Lost);
  EXPECT_EQ(classify("unsupported dtype"), Cause::Other);
  EXPECT_EQ(rank_list({1, 3, 4, 5, 9}), "1, 3-5, 9");
  EXPECT_EQ(rank_list({2, 3}), "2, 3");
  EXPECT_EQ(rank_list({0, 2, 4, 6}, 2), "0, 2, ...");
}

TEST(FailureText, ExceptionMessagesLoseLocationsAndLineBreaks) {
  const auto e = std::make_exception_ptr(std::runtime_error("[./gloo/transport/tcp/pair.cc:598] Connection\nclosed"));
  EXPECT_EQ(message_of(e), "Connection closed");
  EXPECT_EQ(message_of(std::make_exception_ptr(std::runtime_error(std::string(500, 'x'))), 10), "xxxxxxxxxx...");
}

TEST(FailureText, TheReportSaysWhatFailedAndWhy) {
  OpInfo recv{OpKind::Recv, 2, 7, 128};
  const std::string lost = failure_report(recv, "Connection reset by peer", milliseconds(5000), "gloo");
  EXPECT_EQ(lost.rfind("irecv of 128 bytes from rank 2 (tag 7) failed after ", 0), 0u) << lost;
  EXPECT_NE(lost.find("the connection to rank 2 was lost (rank 2 died or exited) [gloo: Connection reset by peer]"),
            std::string::npos)
      << lost;
  OpInfo all{OpKind::Allreduce, -1, 0, 8};
  const std::string hung = failure_report(all, "timed out", milliseconds(5000), "nccl");
  EXPECT_NE(hung.find("a peer rank is missing: no progress within the timeout of 5000 ms"), std::string::npos) << hung;
}

TEST(FailureText, TheDiagnosisNamesEveryOtherRanksState) {
  DiagnosisFacts f;
  f.rank = 0;
  f.world_size = 6;
  f.reports = {std::nullopt, std::string("irecv failed"), std::nullopt, std::nullopt, std::nullopt, std::nullopt};
  f.liveness = {Liveness::Unknown, Liveness::Unknown, Liveness::Gone, Liveness::Alive, Liveness::Alive,
                Liveness::Unknown};
  f.store_reached = true;
  f.store_address = "127.0.0.1:29500";
  f.store_host = "rank 0";
  EXPECT_EQ(diagnosis_text(f),
            "Other ranks reported errors (1): rank 1: irecv failed. Rank 2 died or exited without reporting an "
            "error: nothing accepts connections at its liveness address any more. Ranks 3, 4 still run but "
            "reported no error (hung, stalled, or not yet affected). No error report from rank 5 (dead, hung, or "
            "not yet affected).");
  DiagnosisFacts lost = f;
  lost.store_reached = false;
  lost.store_error = "Connection refused";
  lost.reports.assign(6, std::nullopt);
  lost.liveness.assign(6, Liveness::Gone);
  const std::string t = diagnosis_text(lost);
  EXPECT_EQ(t.rfind("The rendezvous store at 127.0.0.1:29500 cannot be reached (Connection refused): its host, "
                    "rank 0, has probably died or exited.",
                    0),
            0u)
      << t;
  EXPECT_NE(t.find("Ranks 1-5 died or exited (whether after reporting an error is unknown)"), std::string::npos) << t;
}

TEST(MessageTags, RangesDoNotOverlap) {
  EXPECT_EQ(tags::halo_reduction(0), 0);
  EXPECT_EQ(tags::halo_refresh(0), 1);
  EXPECT_LT(tags::halo_refresh((1 << 27) - 1), tags::object_gather(0));
  EXPECT_LT(tags::object_gather((1 << 28) - 1), tags::kStateGather);
  EXPECT_THROW(tags::halo_reduction(1 << 27), tessera::Error);
  EXPECT_THROW(tags::object_gather(1 << 28), tessera::Error);
  EXPECT_THROW(tags::halo_reduction(-1), tessera::Error);
}
