// HTTP client of the cove CLI: blocking requests to coved over libcurl, with
// bearer auth, the error envelope decoded into cove::Error, and SSE streaming.
//
// One HttpClient owns one curl handle (connections are kept alive between
// calls); it is not thread-safe. Failures are cove::Error values whose
// context holds "code" (the API error code, e.g. SANDBOX_NOT_FOUND) and
// "httpStatus" when the server answered.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace cove::cli {

// One Server-Sent Event: the `event:` field (empty when absent) and the
// `data:` lines joined with '\n'.
struct SseEvent {
  std::string event;
  std::string data;
};

// Incremental SSE parser (the WHATWG event-stream format): feed it bytes in
// chunks of any size; it calls the sink once per complete event. Handles LF,
// CRLF and CR line ends, comments, `event:`/`data:`/`id:`/`retry:` fields and a
// UTF-8 BOM. Lines longer than max_line bytes are an error (a hostile or broken
// server cannot make the CLI buffer without bound).
class SseParser {
 public:
  using Sink = std::function<void(SseEvent)>;
  explicit SseParser(Sink sink, size_t max_line = 64u << 20);

  Status Feed(std::string_view bytes);
  // Call at end of stream; a final event without its blank line is dropped,
  // as the spec says.
  void Finish();

 private:
  void Line(std::string_view line);

  Sink sink_;
  size_t max_line_;
  std::string pending_;   // an incomplete line
  bool after_cr_ = false; // the previous chunk ended with '\r'
  bool first_line_ = true;
  std::string event_;
  std::string data_;
  bool has_data_ = false;
};

// Shows a one-line progress indicator on stderr when stderr is a terminal and
// the step has run for more than a second; erases it when destroyed.
class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  // Called often (from curl's progress callback); redraws at most 10 times a second.
  void Update(uint64_t sent, uint64_t received);

 private:
  std::string label_;
  bool enabled_;
  int64_t start_ns_;
  int64_t last_draw_ns_ = 0;
  bool drawn_ = false;
  unsigned frame_ = 0;
};

struct Response {
  long status = 0;
  std::string content_type;
  std::string body;
};

// Where a request body comes from: a string in memory, or a file streamed
// from disk (fd borrowed, read from its current offset, size bytes).
struct Body {
  std::string data;
  int fd = -1;
  uint64_t size = 0;
  std::string content_type = "application/json";
};

class HttpClient {
 public:
  // base_url like "http://127.0.0.1:7070" (no trailing slash needed); an
  // empty token sends no Authorization header.
  static Result<std::unique_ptr<HttpClient>> Create(std::string base_url, std::string token);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request. A non-2xx answer is returned as an Error decoded from
  // the error envelope. progress may be null.
  Result<Response> Request(std::string_view method, std::string_view path, const Body* body,
                           Progress* progress = nullptr);
  // JSON convenience: parses a 2xx body as JSON text (returned as-is).
  Result<std::string> Json(std::string_view method, std::string_view path,
                           const std::string* json_body, Progress* progress = nullptr);

  // POSTs json_body and reads an SSE answer, calling on_event for each event
  // as it arrives. on_event returns false to stop reading (treated as
  // success). A non-2xx answer is an Error as for Request.
  using EventFn = std::function<bool(const SseEvent&)>;
  Status Stream(std::string_view path, const std::string& json_body, const EventFn& on_event,
                Progress* progress = nullptr);

  const std::string& base_url() const { return base_url_; }

 private:
  HttpClient(std::string base_url, std::string token, void* curl);
  struct Call;
  Status Perform(Call& call);

  std::string base_url_;
  std::string token_;
  void* curl_;  // CURL*
};

// Percent-encodes one path segment (everything but unreserved characters).
std::string EscapeSegment(std::string_view s);

// Decodes an API error envelope {code, message, ...} of an HTTP answer.
Error ErrorFromResponse(long status, std::string_view body);

// The API error code of an Error from this client ("" if none).
std::string ApiCode(const Error& e);

}  // namespace cove::cli
