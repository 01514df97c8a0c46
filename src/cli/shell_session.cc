#include "cli/shell_session.h"

#include <unistd.h>

#include <utility>  // before Boost: asio 1.74 uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <csignal>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>

#include "cli/http_client.h"
#include "cli/shell_protocol.h"
#include "cli/stdin_pump.h"
#include "cli/terminal_mode.h"
#include "sys/io.h"

namespace cove::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr char kEndOfInput = '\x04';  // the terminal's EOF key (Ctrl-D)
// After piped input ends, Ctrl-D is typed again whenever the shell has been
// this quiet: one typed while a command runs or before the shell set up its
// line editor reaches that command, or is lost in the PTY's canonical mode.
constexpr auto kEndOfInputRepeat = std::chrono::milliseconds(500);

// How an attachment ended.
struct Outcome {
  std::optional<int> exit_status;  // the shell exited
  int signal = 0;                  // cove was told to stop (detached)
  std::optional<Error> error;
};

// Sends the bearer token (and names the client) on the upgrade request; the
// upgrade gets Beast's client timeout (30 s), the attached socket none.
template <class Ws>
void PrepareUpgrade(Ws& ws, const std::string& token) {
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
    req.set(beast::http::field::user_agent, "cove-cli");
    if (!token.empty()) req.set(beast::http::field::authorization, "Bearer " + token);
  }));
}

// The upgrade, with coved's refusal (401, 404, ...) turned into the same
// Error an HttpClient call would give.
// (Asynchronous because Boost 1.74's synchronous handshake drops the response
// when the upgrade is declined.)
template <class Ws>
Status Upgrade(asio::io_context& io, Ws& ws, const WsEndpoint& ep, const std::string& target) {
  websocket::response_type res;
  error_code ec;
  ws.async_handshake(res, ep.host_header, target, [&ec](error_code e) { ec = e; });
  io.run();
  io.restart();
  if (!ec) return OkStatus();
  int status = res.result_int();
  if (status != 0 && status != 101) return ErrorFromResponse(status, res.body());
  return MakeError(ErrorCode::kUnavailable, "terminal upgrade failed: " + ec.message());
}

// The attached loop: socket reads, queued writes and signals on one
// io_context thread; stdin on a StdinPump thread that posts to it.
template <class Ws>
class Attachment {
 public:
  Attachment(asio::io_context& io, Ws& ws, int tty_fd)
      : io_(io), ws_(ws), tty_fd_(tty_fd), signals_(io, SIGINT, SIGTERM, SIGHUP), quiet_(io) {
    signals_.add(SIGWINCH);
  }

  // Until the shell exits, coved fails, or a signal detaches. (The signal
  // handlers are installed by the constructor, before raw mode is entered.)
  void Run(bool stdin_is_tty) {
    stdin_is_tty_ = stdin_is_tty;
    WaitSignal();
    Read();
    // A pump thread reads stdin; its chunks run as handlers on this thread.
    pump_ = std::make_unique<StdinPump>(STDIN_FILENO, [this](std::string chunk) {
      asio::post(io_, [this, chunk = std::move(chunk)]() mutable { OnInput(std::move(chunk)); });
    });
    io_.run();
    pump_.reset();  // joins before the handlers it posted are destroyed with io_
  }

  Outcome& outcome() { return outcome_; }

 private:
  struct Frame {
    std::string data;
    bool binary;
    size_t from_stdin;  // bytes to report Consumed() to the pump once sent
  };

  void Finish() {
    done_ = true;
    signals_.cancel();
    quiet_.cancel();
    io_.stop();
  }

  void Fail(Error e) {
    if (done_) return;
    outcome_.error = std::move(e);
    Finish();
  }

  void WaitSignal() {
    signals_.async_wait([this](error_code ec, int signo) {
      if (ec || done_) return;
      if (signo == SIGWINCH) {
        if (auto size = TerminalSize(tty_fd_)) Send({ResizeMessage(*size), false, 0});
        WaitSignal();
        return;
      }
      outcome_.signal = signo;
      Finish();
    });
  }

  void Read() {
    ws_.async_read(in_, [this](error_code ec, size_t) {
      if (done_) return;
      if (ec) {
        Fail(MakeError(ErrorCode::kUnavailable,
                       ec == websocket::error::closed
                           ? std::string("coved closed the terminal before the shell exited")
                           : "connection to coved lost: " + ec.message()));
        return;
      }
      std::string data = beast::buffers_to_string(in_.data());
      in_.consume(in_.size());
      if (ws_.got_binary()) {
        if (input_ended_) TypeEndOfInputWhenQuiet();
        // A closed stdout (`cove shell ID | head`) is not fatal: keep draining.
        if (!output_closed_ && !sys::WriteAll(STDOUT_FILENO, data).ok()) output_closed_ = true;
      } else {
        ServerMessage m = ParseServerMessage(data);
        if (m.kind == ServerMessage::Kind::kExit) {
          outcome_.exit_status = m.exit_status;
          Finish();
          return;
        }
        if (m.kind == ServerMessage::Kind::kError) {
          Fail(MakeError(ErrorCode::kInternal, m.message));
          return;
        }
      }
      Read();
    });
  }

  void OnInput(std::string chunk) {
    if (done_) return;
    if (chunk.empty()) {
      // End of input. From a pipe or file: Ctrl-D, so the shell sees the end
      // of its script. A terminal only ends like this when it hangs up, and
      // SIGHUP detaches anyway.
      if (stdin_is_tty_) return;
      input_ended_ = true;
      // An unterminated last line still runs, as with `bash < script`.
      std::string end = ends_line_ ? "" : "\n";
      Send({end + kEndOfInput, true, 0});
      TypeEndOfInputWhenQuiet();
      return;
    }
    ends_line_ = chunk.back() == '\n' || chunk.back() == '\r';
    size_t n = chunk.size();
    Send({std::move(chunk), true, n});
  }

  // (Re)starts the quiet timer: Ctrl-D once the shell has said nothing for
  // kEndOfInputRepeat, and again after each such pause.
  void TypeEndOfInputWhenQuiet() {
    quiet_.expires_after(kEndOfInputRepeat);
    quiet_.async_wait([this](error_code ec) {
      if (ec || done_) return;
      Send({std::string(1, kEndOfInput), true, 0});
      TypeEndOfInputWhenQuiet();
    });
  }

  void Send(Frame f) {
    out_.push_back(std::move(f));
    if (!writing_) Write();
  }

  void Write() {
    writing_ = true;
    ws_.binary(out_.front().binary);
    ws_.async_write(asio::buffer(out_.front().data), [this](error_code ec, size_t) {
      writing_ = false;
      if (done_) return;
      if (ec) {
        Fail(MakeError(ErrorCode::kUnavailable, "connection to coved lost: " + ec.message()));
        return;
      }
      if (out_.front().from_stdin) pump_->Consumed(out_.front().from_stdin);
      out_.pop_front();
      if (!out_.empty()) Write();
    });
  }

  asio::io_context& io_;
  Ws& ws_;
  int tty_fd_;
  asio::signal_set signals_;
  std::unique_ptr<StdinPump> pump_;
  bool stdin_is_tty_ = false;
  asio::steady_timer quiet_;
  bool input_ended_ = false;
  bool ends_line_ = true;
  beast::flat_buffer in_;
  std::deque<Frame> out_;
  bool writing_ = false;
  bool output_closed_ = false;
  bool done_ = false;
  Outcome outcome_;
};

// Attached from the upgrade on: raw mode, the loop, and the terminal put back
// before anything is printed.
template <class Ws>
Result<int> Attach(asio::io_context& io, Ws& ws, const ShellOptions& o) {
  const int tty_fd = ControllingTerminalFd();
  const bool stdin_is_tty = ::isatty(STDIN_FILENO);
  Attachment<Ws> attachment(io, ws, tty_fd);
  {
    // Signals are already caught (attachment owns the signal_set), so a kill
    // between here and the end cannot leave the terminal raw.
    COVE_ASSIGN_OR_RETURN(std::optional<RawTerminal> raw, RawTerminal::Enter(STDIN_FILENO));
    try {
      attachment.Run(stdin_is_tty);
    } catch (const std::exception& e) {
      return MakeError(ErrorCode::kInternal, std::string("terminal failed: ") + e.what());
    }
  }  // raw mode ends here
  Outcome& out = attachment.outcome();
  if (out.error) return *out.error;
  if (out.signal) {
    const char* name = sigabbrev_np(out.signal);
    std::fprintf(stderr,
                 "\r\ncove: detached (SIG%s); the shell keeps running: cove shell %s --session %s\n",
                 name ? name : "?", o.id.c_str(), o.session.c_str());
    return 128 + out.signal;
  }
  if (out.exit_status) return *out.exit_status;
  return MakeError(ErrorCode::kUnavailable, "the terminal ended without an exit status");
}

Status Connect(tcp::socket& sock, asio::io_context& io, const WsEndpoint& ep,
               const std::string& base_url) {
  tcp::resolver resolver(io);
  error_code ec;
  auto addrs = resolver.resolve(ep.host, ep.port, ec);
  if (!ec) asio::connect(sock, addrs, ec);
  if (ec) return MakeError(ErrorCode::kUnavailable, "cannot reach coved at " + base_url + ": " +
                                                        ec.message());
  return OkStatus();
}

}  // namespace

Result<int> RunShell(const ShellOptions& o) {
  COVE_ASSIGN_OR_RETURN(WsEndpoint ep, ParseBaseUrl(o.base_url));
  const std::string target =
      PtyTarget(ep, o.id, o.session, TerminalSize(ControllingTerminalFd()));
  asio::io_context io;
  if (!ep.tls) {
    websocket::stream<tcp::socket> ws(io);
    COVE_TRY(Connect(ws.next_layer(), io, ep, o.base_url));
    PrepareUpgrade(ws, o.token);
    COVE_TRY(Upgrade(io, ws, ep, target));
    return Attach(io, ws, o);
  }
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_default_verify_paths();
  tls.set_verify_mode(asio::ssl::verify_peer);
  websocket::stream<asio::ssl::stream<tcp::socket>> ws(io, tls);
  COVE_TRY(Connect(ws.next_layer().next_layer(), io, ep, o.base_url));
  SSL_set_tlsext_host_name(ws.next_layer().native_handle(), ep.host.c_str());
  ws.next_layer().set_verify_callback(asio::ssl::host_name_verification(ep.host));
  error_code ec;
  ws.next_layer().handshake(asio::ssl::stream_base::client, ec);
  if (ec) {
    return MakeError(ErrorCode::kUnavailable,
                     "TLS with coved at " + o.base_url + " failed: " + ec.message());
  }
  PrepareUpgrade(ws, o.token);
  COVE_TRY(Upgrade(io, ws, ep, target));
  return Attach(io, ws, o);
}

}  // namespace cove::cli
