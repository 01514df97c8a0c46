// The byte-level half of an HTTP/1 relay, over io::ByteStream, shared by every
// relay of cove (the preview listener, the egress proxy): reading a message
// head (bounded, with a deadline), reading a response's heads past the
// interim ones, and relaying a body as it is framed (http_head.h's Framing),
// byte for byte and never re-encoded: chunked bodies are scanned for their
// end (ChunkedScanner), so the bytes after a message stay in the read-ahead
// buffer for the next one. The one re-framing is RelayBodyAsChunked (a body
// read until the server closes, sent on as chunks to keep the client's
// connection usable).
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "http/http_head.h"
#include "io/byte_stream.h"

namespace cove::http {

enum class HeadStatus { kOk, kClosed, kTooLarge, kMalformed };

// Reads from `from` (after what `buf` already holds) until `buf` starts with
// a complete head, then moves it to `head`. kTooLarge past `max_head` bytes;
// kClosed at EOF, on an error, or at the deadline.
Task<HeadStatus> ReadHead(io::ByteStream& from, std::string& buf, std::chrono::steady_clock::time_point deadline,
                          size_t max_head, std::string* head);

// Reads response heads from `upstream` until the final one (status >= 200,
// or 101), which goes to `head`. The interim ones (100 Continue, 103 Early
// Hints) are passed on to `client` as they come, without hop-by-hop fields;
// `*interim_sent` says whether any was. kMalformed for a head that does not
// parse (ParseResponseHead); the others as ReadHead, each head with its own
// deadline (`wait` from when it is awaited).
Task<HeadStatus> ReadResponseHead(io::ByteStream& upstream, std::string& buf, std::chrono::steady_clock::duration wait,
                                  size_t max_head, io::ByteStream& client, HttpHead* head, bool* interim_sent);

// How a body relay ended: kReadFailed when the source failed, closed too
// early or sent a malformed chunked body; kWriteFailed when the destination
// failed.
enum class BodyEnd { kDone, kReadFailed, kWriteFailed };

// Relays one body framed as `framing` from `from` to `to`, starting with what
// `buf` holds; what follows the body stays in `buf`. Each piece is written
// before the next is read (a slow reader slows the sender, nothing piles up
// in coved). `progress` runs after every piece moved (an idle timer's touch).
Task<BodyEnd> RelayBody(io::ByteStream& from, std::string& buf, io::ByteStream& to, Framing framing,
                        std::function<void()> progress = {});

// Relays a body read until `from` closes (BodyKind::kUntilClose) as a
// chunked body: each piece as it arrives one chunk, then the last chunk.
Task<BodyEnd> RelayBodyAsChunked(io::ByteStream& from, std::string& buf, io::ByteStream& to,
                                 std::function<void()> progress = {});

}  // namespace cove::http
