// TLS 1.0-1.3 ClientHello scanning (RFC 8446 §4.1.2, RFC 6066 §3).
#include "proxy/tls_client_hello.h"

#include <cstdint>

namespace cove::proxy {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordFragment = (1 << 14) + 2048;
constexpr uint16_t kServerNameExtension = 0;
constexpr uint8_t kHostNameType = 0;

// Bounds-checked reads over a byte range; any read past the end sets `bad`.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  bool bad() const { return bad_; }
  bool empty() const { return pos_ >= bytes_.size(); }
  uint32_t Uint(size_t width) {
    if (bad_ || bytes_.size() - pos_ < width) {
      bad_ = true;
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < width; ++i) v = (v << 8) | static_cast<uint8_t>(bytes_[pos_ + i]);
    pos_ += width;
    return v;
  }
  std::string_view Bytes(size_t n) {
    if (bad_ || bytes_.size() - pos_ < n) {
      bad_ = true;
      return {};
    }
    std::string_view v = bytes_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  // A vector with a `width`-byte length prefix.
  std::string_view Vector(size_t width) { return Bytes(Uint(width)); }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
  bool bad_ = false;
};

ClientHelloScan Fail(ClientHelloScan::Outcome outcome, std::string problem) {
  ClientHelloScan scan;
  scan.outcome = outcome;
  scan.problem = std::move(problem);
  return scan;
}

bool PlausibleHostName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Parses a complete ClientHello body (after the 4-byte handshake header).
ClientHelloScan ParseBody(std::string_view body) {
  using O = ClientHelloScan::Outcome;
  Reader r(body);
  r.Uint(2);         // legacy_version
  r.Bytes(32);       // random
  if (r.Vector(1).size() > 32) return Fail(O::kMalformed, "session id longer than 32 bytes");
  std::string_view suites = r.Vector(2);
  if (suites.empty() || suites.size() % 2 != 0) return Fail(O::kMalformed, "bad cipher suites");
  if (r.Vector(1).empty()) return Fail(O::kMalformed, "no compression methods");
  if (r.bad()) return Fail(O::kMalformed, "truncated ClientHello");
  ClientHelloScan scan;
  scan.outcome = O::kComplete;
  if (r.empty()) return scan;  // no extensions at all
  Reader extensions(r.Vector(2));
  if (r.bad() || !r.empty()) return Fail(O::kMalformed, "bad extensions length");
  bool seen_server_name = false;
  while (!extensions.empty()) {
    uint32_t type = extensions.Uint(2);
    std::string_view data = extensions.Vector(2);
    if (extensions.bad()) return Fail(O::kMalformed, "truncated extension");
    if (type != kServerNameExtension) continue;
    if (seen_server_name) return Fail(O::kMalformed, "two server_name extensions");
    seen_server_name = true;
    Reader ext(data);
    Reader list(ext.Vector(2));
    if (ext.bad() || !ext.empty()) return Fail(O::kMalformed, "bad server_name list length");
    while (!list.empty()) {
      uint32_t name_type = list.Uint(1);
      std::string_view name = list.Vector(2);
      if (list.bad()) return Fail(O::kMalformed, "truncated server_name entry");
      if (name_type != kHostNameType) continue;
      if (scan.server_name) return Fail(O::kMalformed, "two host_name entries");
      if (!PlausibleHostName(name)) return Fail(O::kMalformed, "server name is not a DNS name");
      std::string lower(name);
      for (char& c : lower) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      if (lower.back() == '.') lower.pop_back();
      if (lower.empty()) return Fail(O::kMalformed, "empty server name");
      scan.server_name = std::move(lower);
    }
  }
  return scan;
}

}  // namespace

ClientHelloScan ScanClientHello(std::string_view bytes) {
  using O = ClientHelloScan::Outcome;
  // Concatenate the fragments of consecutive handshake records until the
  // handshake message is complete.
  std::string handshake;
  size_t pos = 0;
  while (true) {
    if (bytes.size() - pos < kRecordHeader) {
      if (pos == 0 && !bytes.empty() && static_cast<uint8_t>(bytes[0]) != kHandshakeRecord) {
        return Fail(O::kNotTls, "not a TLS handshake record");
      }
      return ClientHelloScan{};
    }
    Reader header(bytes.substr(pos, kRecordHeader));
    uint32_t type = header.Uint(1);
    uint32_t major = header.Uint(1);
    header.Uint(1);
    uint32_t length = header.Uint(2);
    if (type != kHandshakeRecord || major != 3) {
      if (pos == 0) return Fail(O::kNotTls, "not a TLS handshake record");
      return Fail(O::kMalformed, "ClientHello interrupted by another record type");
    }
    if (length == 0 || length > kMaxRecordFragment) return Fail(O::kMalformed, "bad record length");
    if (bytes.size() - pos - kRecordHeader < length) return ClientHelloScan{};
    handshake.append(bytes.substr(pos + kRecordHeader, length));
    pos += kRecordHeader + length;
    if (handshake.size() < 4) continue;
    Reader hs(handshake);
    if (hs.Uint(1) != kClientHello) return Fail(O::kMalformed, "first handshake message is not a ClientHello");
    uint32_t body_length = hs.Uint(3);
    if (handshake.size() - 4 < body_length) continue;
    return ParseBody(std::string_view(handshake).substr(4, body_length));
  }
}

}  // namespace cove::proxy
