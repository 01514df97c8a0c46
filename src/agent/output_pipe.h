// The output pipes of the agent's children (session shells, sessionless
// commands, code runners), streamed to a channel as
// {"type": "stdout"|"stderr", "data": text} events, text decoded as UTF-8
// across reads (base/utf8.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/link.h"
#include "agent/loop.h"
#include "base/utf8.h"

namespace cove::agent {

// Full reads of a pipe per readable event at most (OnOutputReadable): output
// that arrives faster is read in turn with the loop's other fds.
inline constexpr int kReadsPerWakeup = 8;
// An output event takes more reads while its JSON is shorter than this (a read
// is at most kReadChunk raw bytes, 6x that escaped: an event stays well under
// the 1 MiB frame of docs/agent-protocol.md). Fewer, larger events cost coved,
// the connection and the HTTP client less per byte.
inline constexpr size_t kOutputEventJsonTarget = 192 << 10;

// Reads up to `max` bytes from fd, and again (at most `reads` reads) while
// each read filled its buffer and the event is under kOutputEventJsonTarget,
// and emits them as one `type` event on c (null or dead: discarded). Returns
// false on EOF or error.
bool PumpOnce(Link& link, int fd, const char* type, Utf8JsonStream* dec, const Chan* c, size_t max,
              int reads = 1);
// Reads everything currently buffered in fd (FIONREAD), emitting it.
void Drain(Link& link, int fd, const char* type, Utf8JsonStream* dec, const Chan* c);
// Emits what the decoders hold back (an incomplete UTF-8 tail) when the streams end.
void FinishStreams(Link& link, Utf8JsonStream* out, Utf8JsonStream* err, const Chan* c);
// The output watch `*token` of fd is readable: pumps it (up to
// kReadsPerWakeup reads, one event) unless events for c must wait
// (Link::HoldOutput pauses the watch); on EOF unwatches it and sets *token to 0.
void OnOutputReadable(Link& link, EventLoop& loop, uint64_t* token, int fd, const char* type,
                      Utf8JsonStream* dec, const Chan* c);

}  // namespace cove::agent
