#include "cli/terminal_mode.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace cove::cli {

std::optional<WindowSize> TerminalSize(int fd) {
  winsize ws{};
  if (fd < 0 || ::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) {
    return std::nullopt;
  }
  return WindowSize{ws.ws_col, ws.ws_row};
}

int ControllingTerminalFd() {
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    if (::isatty(fd)) return fd;
  }
  return -1;
}

termios RawSettings(const termios& in) {
  termios t = in;
  t.c_iflag &= ~tcflag_t(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  t.c_oflag &= ~tcflag_t(OPOST);
  t.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  t.c_cflag &= ~tcflag_t(CSIZE | PARENB);
  t.c_cflag |= CS8;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  return t;
}

Result<std::optional<RawTerminal>> RawTerminal::Enter(int fd) {
  if (!::isatty(fd)) return std::optional<RawTerminal>();
  termios saved;
  if (::tcgetattr(fd, &saved) != 0) return SysError("tcgetattr");
  termios raw = RawSettings(saved);
  // TCSADRAIN, not TCSAFLUSH: keys typed before cove attached still go to the shell.
  if (::tcsetattr(fd, TCSADRAIN, &raw) != 0) return SysError("tcsetattr");
  return std::optional<RawTerminal>(RawTerminal(fd, saved));
}

RawTerminal::RawTerminal(RawTerminal&& other) noexcept : fd_(other.fd_), saved_(other.saved_) {
  other.fd_ = -1;
}

RawTerminal::~RawTerminal() { Restore(); }

void RawTerminal::Restore() {
  if (fd_ < 0) return;
  // TCSADRAIN: the shell's last output reaches the screen in raw mode first.
  while (::tcsetattr(fd_, TCSADRAIN, &saved_) != 0 && errno == EINTR) {
  }
  fd_ = -1;
}

}  // namespace cove::cli
