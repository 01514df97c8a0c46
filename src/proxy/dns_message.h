// DNS wire format (RFC 1035), the part coved needs: parse the one-question
// queries sandboxes send, build responses to them, build queries to upstream
// servers and read the A/AAAA answers (following CNAME chains) from theirs.
//
// Every input is hostile: names are bounded (63-byte labels, 255-byte names),
// compression pointers must point backwards and are followed a bounded number
// of times, counts are capped, and nothing reads past the message. Names are
// dotted text without the trailing dot; a query's name is restricted to
// letters, digits, '-' and '_' (anything else could not be a host name and is
// refused); names read from upstream answers escape other bytes as \DDD, so
// they can never equal a query name by accident. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "policy/egress_policy.h"

namespace cove::proxy::dns {

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeOpt = 41;
inline constexpr uint16_t kClassIn = 1;

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxUdpSize = 512;     // without EDNS, RFC 1035 4.2.1
inline constexpr size_t kMaxMessageSize = 65535;
inline constexpr size_t kMaxNameLength = 255;  // wire form, RFC 1035 2.3.4
inline constexpr size_t kMaxLabelLength = 63;
inline constexpr int kMaxCnameHops = 8;

enum class Rcode : uint8_t { kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5 };

struct Question {
  std::string name;  // as sent (case kept), no trailing dot; "" is the root
  uint16_t type = kTypeA;
  uint16_t klass = kClassIn;
};

struct Query {
  uint16_t id = 0;
  uint8_t opcode = 0;
  bool recursion_desired = false;
  Question question;
};

// The id of a message, when it is at least a header long (to answer FORMERR).
std::optional<uint16_t> MessageId(std::span<const uint8_t> msg);

// A query: QR clear, exactly one question, no answer or authority records
// (additional records such as EDNS OPT are ignored). kInvalidArgument when
// malformed.
Result<Query> ParseQuery(std::span<const uint8_t> msg);

struct ResourceRecord {
  std::string name;
  uint16_t type = kTypeA;
  uint32_t ttl = 0;
  std::vector<uint8_t> rdata;  // for CNAME: the wire form of the target name
};
ResourceRecord AddressRecord(const std::string& name, const IpAddress& addr, uint32_t ttl);  // A or AAAA
Result<ResourceRecord> CnameRecord(const std::string& name, const std::string& target, uint32_t ttl);

// A response to `query` echoing its question. Answers that would make the
// message longer than max_size are left out and TC is set. RA is set, RD
// copied. Names are written uncompressed.
std::vector<uint8_t> BuildResponse(const Query& query, Rcode rcode, const std::vector<ResourceRecord>& answers,
                                   size_t max_size = kMaxUdpSize, bool authoritative = false);
// A header-only response (no question) for a message too broken to echo.
std::vector<uint8_t> BuildHeaderOnlyResponse(uint16_t id, Rcode rcode);

// A recursive (RD) query for `name`; kInvalidArgument for a name that is not
// a valid host name.
Result<std::vector<uint8_t>> BuildQuery(uint16_t id, const std::string& name, uint16_t type);

struct UpstreamAnswer {
  Rcode rcode = Rcode::kNoError;
  bool truncated = false;
  std::vector<IpAddress> addresses;     // of the requested type, at the end of the CNAME chain
  uint32_t ttl = 0;                     // smallest TTL of the records used (0 when none)
  std::optional<uint32_t> negative_ttl; // from the authority SOA (min of its TTL and MINIMUM)
};

// Reads an upstream server's response to the query (id, name, type) built by
// BuildQuery. kInvalidArgument when the message is malformed or is not a
// response to that query (wrong id, question or QR bit): the caller keeps
// waiting for the real answer.
Result<UpstreamAnswer> ParseUpstreamResponse(std::span<const uint8_t> msg, uint16_t id, const std::string& name,
                                             uint16_t type);

// Lower-case, without one trailing dot; kInvalidArgument unless a valid host
// name in DNS terms (1-63 byte labels of letters, digits, '-', '_'; 253 chars).
Result<std::string> CanonicalName(const std::string& name);

}  // namespace cove::proxy::dns
