// WaitUntil: the way a C++ test waits for something to happen (a process to
// exit, a counter to move, a device to go away) instead of sleeping for a
// while and hoping: polls `pred` every 10 ms until it holds and returns true;
// after `timeout` adds a gtest failure naming what was awaited and returns
// false. The timeout is generous on purpose: on a loaded machine what takes a
// millisecond can take seconds, and a condition that holds ends the wait at
// once. Header-only, for tests (needs gtest).
#pragma once

#include <chrono>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>

namespace cove::testing {

template <typename Pred>
bool WaitUntil(Pred&& pred, std::string_view what, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "gave up after " << timeout.count() << " ms waiting for " << what;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace cove::testing
