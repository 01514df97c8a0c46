// The user's terminal as `cove shell` needs it: raw mode while attached
// (restored when the guard goes away, whatever the exit path) and the
// window size.
#pragma once

#include <termios.h>

#include <optional>

#include "base/error.h"

namespace cove::cli {

struct WindowSize {
  int cols = 0;
  int rows = 0;
};

// The size of the terminal on fd (TIOCGWINSZ); nullopt if fd is not a
// terminal or reports a zero size.
std::optional<WindowSize> TerminalSize(int fd);

// The first of stdin, stdout and stderr that is a terminal, or -1.
int ControllingTerminalFd();

// Puts a terminal in raw mode (no echo, no line editing, no signal keys, no
// output processing: every key goes to the remote shell as a byte) and puts
// the saved settings back when destroyed or Restore()d (once; idempotent).
class RawTerminal {
 public:
  // Does nothing (and succeeds) when fd is not a terminal.
  static Result<std::optional<RawTerminal>> Enter(int fd);
  ~RawTerminal();
  RawTerminal(RawTerminal&& other) noexcept;
  RawTerminal& operator=(RawTerminal&&) = delete;
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  void Restore();

 private:
  RawTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  int fd_;
  termios saved_;
};

// The settings cfmakeraw would make of `in`, spelled out (unit-tested).
termios RawSettings(const termios& in);

}  // namespace cove::cli
