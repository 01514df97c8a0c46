#include "cli/shell_protocol.h"

#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cli/http_client.h"

namespace cove::cli {

using nlohmann::json;

Result<WsEndpoint> ParseBaseUrl(std::string_view url) {
  WsEndpoint ep;
  std::string_view rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    ep.tls = true;
    rest = url.substr(8);
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid URL \"" + std::string(url) + "\": must start with http:// or https://");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) ep.path_prefix = std::string(rest.substr(slash));
  while (!ep.path_prefix.empty() && ep.path_prefix.back() == '/') ep.path_prefix.pop_back();
  if (authority.find('@') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid URL \"" + std::string(url) + "\": user info is not supported");
  }
  ep.host_header = std::string(authority);
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {  // [v6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "invalid URL \"" + std::string(url) + "\"");
    }
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return MakeError(ErrorCode::kInvalidArgument, "invalid URL \"" + std::string(url) + "\"");
      }
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (ep.host.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid URL \"" + std::string(url) + "\": no host");
  }
  if (port.empty()) port = ep.tls ? "443" : "80";
  for (char c : port) {
    if (c < '0' || c > '9') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "invalid URL \"" + std::string(url) + "\": bad port");
    }
  }
  ep.port = std::string(port);
  return ep;
}

std::string PtyTarget(const WsEndpoint& ep, std::string_view id, std::string_view session,
                      const std::optional<WindowSize>& size) {
  std::string t = ep.path_prefix + "/v1/sandboxes/" + EscapeSegment(id) +
                  "/ws/pty?sessionId=" + EscapeSegment(session);
  if (size) {
    t += "&cols=" + std::to_string(size->cols) + "&rows=" + std::to_string(size->rows);
  }
  return t;
}

std::string ResizeMessage(const WindowSize& size) {
  return json{{"type", "resize"}, {"cols", size.cols}, {"rows", size.rows}}.dump();
}

namespace {

// "SIGKILL", "KILL" or 9 -> 9; 0 when unknown.
int SignalNumber(const json& s) {
  if (s.is_number_integer()) return s.get<int>();
  if (!s.is_string()) return 0;
  std::string name = s.get<std::string>();
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  for (int n = 1; n < NSIG; ++n) {
    const char* abbrev = sigabbrev_np(n);
    if (abbrev && name == abbrev) return n;
  }
  return 0;
}

}  // namespace

ServerMessage ParseServerMessage(std::string_view text) {
  ServerMessage m;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return m;
  std::string type = j["type"].get<std::string>();
  if (type == "ready") {
    m.kind = ServerMessage::Kind::kReady;
  } else if (type == "exit") {
    m.kind = ServerMessage::Kind::kExit;
    const json code = j.value("code", json());
    int sig = SignalNumber(j.value("signal", json()));
    if (code.is_number_integer() && code.get<long long>() >= 0 && code.get<long long>() <= 255) {
      m.exit_status = static_cast<int>(code.get<long long>());
    } else if (sig > 0 && sig < 128) {
      m.exit_status = 128 + sig;
    } else {
      m.exit_status = 255;
    }
  } else if (type == "error") {
    m.kind = ServerMessage::Kind::kError;
    const json msg = j.value("message", json());
    m.message = msg.is_string() ? msg.get<std::string>() : msg.dump();
    if (m.message.empty() || m.message == "null") m.message = "the terminal failed";
  }
  return m;
}

}  // namespace cove::cli
