#pragma once
// Set-up steps that every rank must pass together. When one rank fails (a
// file it cannot read, a setting it rejects) while the others carry on into
// the first collective, those collectives mismatch: Gloo aborts
// (EnforceNotMet) or the others wait for their timeout, and the real error
// never reaches the user. Here each rank runs the step, then all ranks
// exchange the outcome (one allreduce, one broadcast per failed rank) and
// every rank throws the failed ranks' errors.
#include <functional>
#include <string>

namespace tessera::comm {

class Communicator;

// Runs step(); then, with several ranks, agrees on the outcome: a rank whose
// step threw rethrows its own exception, every other rank throws
// tessera::Error naming the failed ranks and their messages. Every rank must
// call it at the same point (it is a collective). comm may be null (one process).
void agree_on_setup(Communicator* comm, const std::function<void()>& step);

// "key = value" lines compared with rank 0's: ranks started with different
// settings (modes, precision, frame size...) fail at set-up, every rank with
// a message naming the first setting that differs. A collective.
void require_same_settings(Communicator* comm, const std::string& lines);

}  // namespace tessera::comm
