#include "cli/http_client.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/time.h"

namespace cove::cli {

// ---------------------------------------------------------------- SseParser

SseParser::SseParser(Sink sink, size_t max_line) : sink_(std::move(sink)), max_line_(max_line) {}

Status SseParser::Feed(std::string_view bytes) {
  size_t i = 0;
  if (after_cr_ && !bytes.empty()) {
    after_cr_ = false;
    if (bytes[0] == '\n') i = 1;  // the LF of a CRLF split across chunks
  }
  while (i < bytes.size()) {
    size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      pending_.append(bytes.substr(i));
      if (pending_.size() > max_line_) {
        return MakeError(ErrorCode::kResourceExhausted, "event stream line too long");
      }
      return OkStatus();
    }
    std::string_view piece = bytes.substr(i, end - i);
    if (pending_.empty()) {
      Line(piece);
    } else {
      pending_.append(piece);
      if (pending_.size() > max_line_) {
        return MakeError(ErrorCode::kResourceExhausted, "event stream line too long");
      }
      std::string line = std::move(pending_);
      pending_.clear();
      Line(line);
    }
    if (bytes[end] == '\r') {
      if (end + 1 < bytes.size()) {
        i = bytes[end + 1] == '\n' ? end + 2 : end + 1;
      } else {
        after_cr_ = true;
        i = end + 1;
      }
    } else {
      i = end + 1;
    }
  }
  return OkStatus();
}

void SseParser::Finish() {
  pending_.clear();
  event_.clear();
  data_.clear();
  has_data_ = false;
}

void SseParser::Line(std::string_view line) {
  if (first_line_) {
    first_line_ = false;
    if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
  }
  if (line.empty()) {  // dispatch
    if (has_data_) sink_(SseEvent{std::move(event_), std::move(data_)});
    event_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line[0] == ':') return;  // comment
  std::string_view field = line;
  std::string_view value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
  // "id", "retry" and unknown fields are ignored: the CLI never reconnects.
}

// ---------------------------------------------------------------- Progress

Progress::Progress(std::string label)
    : label_(std::move(label)), enabled_(isatty(STDERR_FILENO) == 1), start_ns_(MonotonicNs()) {}

Progress::~Progress() {
  if (drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
}

namespace {
std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}
}  // namespace

void Progress::Update(uint64_t sent, uint64_t received) {
  if (!enabled_) return;
  int64_t now = MonotonicNs();
  if (now - start_ns_ < 1'000'000'000) return;
  if (drawn_ && now - last_draw_ns_ < 100'000'000) return;
  last_draw_ns_ = now;
  drawn_ = true;
  static const char* kFrames[] = {"|", "/", "-", "\\"};
  std::string line = "\r\033[K";
  line += kFrames[frame_++ % 4];
  line += ' ';
  line += label_;
  char secs[32];
  std::snprintf(secs, sizeof secs, " %.1fs", static_cast<double>(now - start_ns_) / 1e9);
  line += secs;
  // Byte counts only when there is a transfer worth watching.
  if (sent >= 64 * 1024) line += "  sent " + HumanBytes(sent);
  if (received >= 64 * 1024) line += "  received " + HumanBytes(received);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

// ---------------------------------------------------------------- errors

Error ErrorFromResponse(long status, std::string_view body) {
  ErrorCode code = ErrorCode::kInternal;
  switch (status) {
    case 400: case 405: case 413: code = status == 413 ? ErrorCode::kResourceExhausted
                                                       : ErrorCode::kInvalidArgument; break;
    case 401: case 403: code = ErrorCode::kPermissionDenied; break;
    case 404: case 410: code = ErrorCode::kNotFound; break;
    case 408: code = ErrorCode::kTimeout; break;
    case 409: code = ErrorCode::kAlreadyExists; break;
    case 502: case 503: case 504: code = ErrorCode::kUnavailable; break;
    default: break;
  }
  std::string api_code;
  std::string message;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object()) {
    if (auto it = j.find("code"); it != j.end() && it->is_string()) api_code = *it;
    if (auto it = j.find("message"); it != j.end() && it->is_string()) message = *it;
    if (message.empty()) {
      if (auto it = j.find("error"); it != j.end() && it->is_string()) message = *it;
    }
  }
  if (message.empty()) {
    std::string_view first = body.substr(0, std::min<size_t>(body.find('\n'), 200));
    message = "HTTP " + std::to_string(status);
    if (!first.empty()) message += ": " + std::string(first);
  }
  Error e = MakeError(code, std::move(message));
  e.context["httpStatus"] = std::to_string(status);
  if (!api_code.empty()) e.context["code"] = api_code;
  return e;
}

std::string ApiCode(const Error& e) {
  auto it = e.context.find("code");
  return it == e.context.end() ? std::string() : it->second;
}

std::string EscapeSegment(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  // "." and ".." are unreserved but would be resolved as dot segments.
  if (out == "." || out == "..") {
    std::string dots;
    for (size_t i = 0; i < out.size(); ++i) dots += "%2E";
    return dots;
  }
  return out;
}

// ---------------------------------------------------------------- HttpClient

struct HttpClient::Call {
  std::string_view method;
  std::string url;
  const Body* body = nullptr;
  Progress* progress = nullptr;
  // Answer.
  Response response;
  // Streaming: when set and the answer is 2xx text/event-stream, the body
  // goes through the parser instead of response.body.
  const EventFn* on_event = nullptr;
  std::unique_ptr<SseParser> parser;
  bool streaming = false;
  bool stopped = false;  // on_event returned false
  Status stream_error;
  // Request body state when streaming from an fd.
  uint64_t sent = 0;
  Status read_error;
};

namespace {
// A non-stream answer (JSON, or an error envelope) larger than this is cut.
constexpr size_t kMaxBody = 256u << 20;
}  // namespace

Result<std::unique_ptr<HttpClient>> HttpClient::Create(std::string base_url, std::string token) {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) return MakeError(ErrorCode::kInternal, "curl_global_init failed");
  while (!base_url.empty() && base_url.back() == '/') base_url.pop_back();
  if (base_url.rfind("http://", 0) != 0 && base_url.rfind("https://", 0) != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid URL \"" + base_url + "\": must start with http:// or https://");
  }
  CURL* curl = curl_easy_init();
  if (!curl) return MakeError(ErrorCode::kInternal, "curl_easy_init failed");
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(base_url), std::move(token), curl));
}

HttpClient::HttpClient(std::string base_url, std::string token, void* curl)
    : base_url_(std::move(base_url)), token_(std::move(token)), curl_(curl) {}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

Status HttpClient::Perform(Call& call) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);  // keeps the connection cache
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "cove-cli/0.1");

  struct curl_slist* headers = nullptr;
  std::string auth;
  if (!token_.empty()) {
    auth = "Authorization: Bearer " + token_;
    headers = curl_slist_append(headers, auth.c_str());
  }
  headers = curl_slist_append(headers, "Expect:");
  std::string ctype;
  if (call.body) {
    ctype = "Content-Type: " + call.body->content_type;
    headers = curl_slist_append(headers, ctype.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  if (call.method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (call.body) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    if (call.body->fd >= 0) {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(call.body->size));
      curl_easy_setopt(curl, CURLOPT_READDATA, &call);
      curl_easy_setopt(
          curl, CURLOPT_READFUNCTION, +[](char* buf, size_t size, size_t n, void* user) -> size_t {
            auto* c = static_cast<Call*>(user);
            uint64_t left = c->body->size - c->sent;
            size_t want = static_cast<size_t>(std::min<uint64_t>(left, size * n));
            if (want == 0) return 0;
            ssize_t got;
            do {
              got = ::read(c->body->fd, buf, want);
            } while (got < 0 && errno == EINTR);
            if (got <= 0) {
              c->read_error = got < 0 ? SysError("read upload file")
                                      : MakeError(ErrorCode::kInternal,
                                                  "upload file shrank while sending");
              return CURL_READFUNC_ABORT;
            }
            c->sent += static_cast<uint64_t>(got);
            return static_cast<size_t>(got);
          });
    } else {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(call.body->data.size()));
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, call.body->data.data());
    }
    if (call.method != "POST") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, std::string(call.method).c_str());
    }
  } else {
    std::string m(call.method);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, m.c_str());
    if (m == "POST") curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, 0L);
  }

  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* user) -> size_t {
        auto* c = static_cast<Call*>(user);
        size_t total = size * n;
        if (c->streaming) {
          Status s = c->parser->Feed(std::string_view(data, total));
          if (!s.ok()) {
            c->stream_error = std::move(s);
            return 0;
          }
          return c->stopped ? 0 : total;
        }
        if (c->response.body.size() + total > kMaxBody) return 0;
        c->response.body.append(data, total);
        return total;
      });
  // Decide at the end of the headers whether the body is an event stream.
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &call);
  curl_easy_setopt(
      curl, CURLOPT_HEADERFUNCTION, +[](char* data, size_t size, size_t n, void* user) -> size_t {
        auto* c = static_cast<Call*>(user);
        std::string_view line(data, size * n);
        if (line.rfind("HTTP/", 0) == 0) {
          // A new response (after a redirect or 1xx): reset.
          size_t sp = line.find(' ');
          c->response.status = sp == std::string_view::npos
                                   ? 0
                                   : std::strtol(std::string(line.substr(sp + 1, 3)).c_str(),
                                                 nullptr, 10);
          c->response.content_type.clear();
          c->response.body.clear();
          c->streaming = false;
        } else if (line.size() > 13 && strncasecmp(line.data(), "content-type:", 13) == 0) {
          std::string_view v = line.substr(13);
          while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
          while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) {
            v.remove_suffix(1);
          }
          c->response.content_type.assign(v);
        } else if (line == "\r\n" || line == "\n") {
          c->streaming = c->on_event != nullptr && c->response.status >= 200 &&
                         c->response.status < 300 &&
                         c->response.content_type.rfind("text/event-stream", 0) == 0;
        }
        return size * n;
      });

  if (call.progress) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, call.progress);
    curl_easy_setopt(
        curl, CURLOPT_XFERINFOFUNCTION,
        +[](void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) -> int {
          static_cast<Progress*>(user)->Update(static_cast<uint64_t>(ulnow),
                                               static_cast<uint64_t>(dlnow));
          return 0;
        });
  }

  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (!call.read_error.ok()) return call.read_error;
  if (!call.stream_error.ok()) return call.stream_error;
  if (rc == CURLE_WRITE_ERROR && call.stopped) return OkStatus();
  if (rc != CURLE_OK) {
    std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    ErrorCode code = (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                      rc == CURLE_OPERATION_TIMEDOUT)
                         ? ErrorCode::kUnavailable
                         : ErrorCode::kInternal;
    if (call.response.status == 0) {
      return MakeError(code, "cannot reach coved at " + base_url_ + ": " + why);
    }
    return MakeError(code, "connection to coved failed: " + why);
  }
  return OkStatus();
}

Result<Response> HttpClient::Request(std::string_view method, std::string_view path,
                                     const Body* body, Progress* progress) {
  Call call;
  call.method = method;
  call.url = base_url_ + std::string(path);
  call.body = body;
  call.progress = progress;
  COVE_TRY(Perform(call));
  if (call.response.status < 200 || call.response.status >= 300) {
    return ErrorFromResponse(call.response.status, call.response.body);
  }
  return std::move(call.response);
}

Result<std::string> HttpClient::Json(std::string_view method, std::string_view path,
                                     const std::string* json_body, Progress* progress) {
  Body body;
  if (json_body) body.data = *json_body;
  COVE_ASSIGN_OR_RETURN(Response r, Request(method, path, json_body ? &body : nullptr, progress));
  return std::move(r.body);
}

Status HttpClient::Stream(std::string_view path, const std::string& json_body,
                          const EventFn& on_event, Progress* progress) {
  Body body;
  body.data = json_body;
  Call call;
  call.method = "POST";
  call.url = base_url_ + std::string(path);
  call.body = &body;
  call.progress = progress;
  call.on_event = &on_event;
  call.parser = std::make_unique<SseParser>([&call](SseEvent ev) {
    if (call.stopped) return;
    if (!(*call.on_event)(ev)) call.stopped = true;
  });
  COVE_TRY(Perform(call));
  if (call.response.status < 200 || call.response.status >= 300) {
    return ErrorFromResponse(call.response.status, call.response.body);
  }
  if (!call.streaming && !call.stopped) {
    return MakeError(ErrorCode::kInternal,
                     "expected an event stream, got \"" + call.response.content_type + "\"");
  }
  call.parser->Finish();
  return OkStatus();
}

}  // namespace cove::cli
