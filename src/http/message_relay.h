// The byte-level half of an HTTP/1 relay, over io::ByteStream: reading a
// message head (bounded, with a deadline) and relaying a body as it is framed
// (http_head.h's Framing), byte for byte and never re-encoded: chunked bodies
// are scanned for their end (ChunkedScanner), so the bytes after a message
// stay in the read-ahead buffer for the next one.
#pragma once

#include <chrono>
#include <string>

#include "http/http_head.h"
#include "io/byte_stream.h"

namespace cove::http {

enum class HeadStatus { kOk, kClosed, kTooLarge };

// Reads from `from` (after what `buf` already holds) until `buf` starts with
// a complete head, then moves it to `head`. kTooLarge past `max_head` bytes;
// kClosed at EOF, on an error, or at the deadline.
Task<HeadStatus> ReadHead(io::ByteStream& from, std::string& buf, std::chrono::steady_clock::time_point deadline,
                          size_t max_head, std::string* head);

// Relays one body framed as `framing` from `from` to `to`, starting with what
// `buf` holds; what follows the body stays in `buf`. False when either side
// failed or the body was malformed (chunked) or cut short.
Task<bool> RelayBody(io::ByteStream& from, std::string& buf, io::ByteStream& to, Framing framing);

}  // namespace cove::http
