// HttpHead: the head of an HTTP/1.x request or response, parsed strictly
// enough to relay messages without smuggling: CRLF (or LF) lines, no obsolete
// line folding, no whitespace before a header's colon, token header names, no
// control characters; Content-Length and Transfer-Encoding checked for
// conflicts (MessageFraming). The proxy forwards heads re-serialized from this
// structure, header order and name case kept.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace cove::http {

struct HttpHead {
  // Request: method, target. Response: status, reason.
  std::string method;
  std::string target;
  int status = 0;
  std::string reason;
  int version_minor = 1;  // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;

  // The first value of a header (names are case-insensitive); empty if absent.
  std::string Get(std::string_view name) const;
  bool Has(std::string_view name) const;
  size_t Count(std::string_view name) const;
  void Remove(std::string_view name);
  void Add(std::string name, std::string value) { headers.emplace_back(std::move(name), std::move(value)); }
  // Whether a comma-separated header (Connection, Upgrade, ...) has `token`.
  bool HasToken(std::string_view name, std::string_view token) const;

  std::string SerializeRequest() const;
  std::string SerializeResponse() const;
};

// The length of the head at the start of buf, blank line included; 0 while
// incomplete.
size_t FindHeadEnd(std::string_view buf);

// kInvalidArgument for anything malformed.
Result<HttpHead> ParseRequestHead(std::string_view head);
Result<HttpHead> ParseResponseHead(std::string_view head);

enum class BodyKind { kNone, kLength, kChunked, kUntilClose };
struct Framing {
  BodyKind kind = BodyKind::kNone;
  uint64_t length = 0;  // kLength
};
// How a request's body is delimited. kInvalidArgument: Content-Length and
// Transfer-Encoding together, more than one or a bad Content-Length, a
// Transfer-Encoding other than one "chunked", or one in an HTTP/1.0 request
// (anything a server behind could delimit another way: request smuggling).
// coved's API listener applies the same rules.
Result<Framing> RequestFraming(const HttpHead& head);
// How a response's body is delimited (RFC 9112 §6.3), given the request method.
Result<Framing> ResponseFraming(const HttpHead& head, std::string_view request_method);

// Whether the sender wants the connection kept open after this message.
bool KeepAlive(const HttpHead& head);
// Removes the hop-by-hop headers: Connection and those it names, Keep-Alive,
// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer and
// Upgrade. Transfer-Encoding stays (the relay forwards bodies as they are
// framed). With keep_upgrade, Upgrade stays and "Connection: Upgrade" is set.
void StripHopByHop(HttpHead& head, bool keep_upgrade);

}  // namespace cove::http
