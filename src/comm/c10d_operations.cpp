// The operations of the c10d group: posting, waiting (blocking, or polled
// for NCCL and collectives), and completion checks.
#include <thread>

#include "src/comm/c10d_group.h"

namespace tessera::comm::detail {

namespace {

// NCCL work completes on the GPU: poll it against our own deadline (Work::wait
// does not block the host unless TORCH_NCCL_BLOCKING_WAIT is set), then let
// wait() order the current stream after it and rethrow any error.
void wait_polling(compat::Work& work, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::microseconds(20);
  while (!work.isCompleted()) {
    if (Clock::now() >= deadline) {
      try {
        work.abort();
      } catch (...) {
      }
      throw std::runtime_error(
          concat("timed out after ", timeout.count(), " ms waiting for the operation"));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
  work.wait();
}

}  // namespace

void C10dOp::blocking_wait() {
  std::string error;
  try {
    if (group_->polls())
      wait_polling(*work_, group_->timeout());
    else
      work_->wait(group_->timeout());  // Gloo also enforces Options::timeout itself
  } catch (...) {
    error = group_->failure_message(info_, message_of(std::current_exception()));
  }
  std::lock_guard<std::mutex> lk(m_);
  state_ = error.empty() ? State::Done : State::Failed;
  error_ = std::move(error);
  cv_.notify_all();
}

void C10dOp::wait() {
  std::unique_lock<std::mutex> lk(m_);
  if (state_ == State::Idle) {
    state_ = State::Waiting;
    lk.unlock();
    blocking_wait();
    lk.lock();
  }
  // Another thread (the background waiter) is waiting: it has its own deadline.
  cv_.wait(lk, [&] { return state_ == State::Done || state_ == State::Failed; });
  if (state_ == State::Failed) throw CommunicationError(error_);
}

bool C10dOp::completed() {
  std::unique_lock<std::mutex> lk(m_);
  if (state_ == State::Done || state_ == State::Failed) return true;
  if (pollable_) {
    try {
      return work_->isCompleted();
    } catch (...) {
      return true;  // wait() will report the error
    }
  }
  if (state_ == State::Idle) {
    state_ = State::Waiting;
    std::thread([self = shared_from_this()] { self->blocking_wait(); }).detach();
  }
  return false;
}


}  // namespace tessera::comm::detail
