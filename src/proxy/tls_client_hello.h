// Reading the server name (SNI) out of the first bytes a TLS client sends: the
// ClientHello, possibly split over several handshake records. Pure function
// over bytes, no I/O; the caller reads until the answer is not kNeedMore.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cove::proxy {

struct ClientHelloScan {
  enum class Outcome {
    kNeedMore,   // a valid prefix of a ClientHello: read more bytes
    kNotTls,     // the bytes do not start with a TLS handshake record
    kMalformed,  // a TLS handshake record, but not a well-formed ClientHello
    kComplete,   // a complete ClientHello
  };
  Outcome outcome = Outcome::kNeedMore;
  // kComplete: the host_name of the server_name extension, lower-cased and
  // without a trailing dot; nullopt when the client sent none.
  std::optional<std::string> server_name;
  std::string problem;  // kNotTls / kMalformed: what was wrong
};

// Scans `bytes`, the first bytes of a connection. A host_name that is not a
// plausible DNS name (letters, digits, '-', '_', '.'; at most 253 bytes) or
// more than one server_name extension or host_name entry is kMalformed.
ClientHelloScan ScanClientHello(std::string_view bytes);

}  // namespace cove::proxy
