// DNS wire format: bounded readers and writers of dns_message.h.
#include "proxy/dns_message.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace cove::proxy::dns {

namespace {

constexpr uint16_t kFlagResponse = 0x8000;
constexpr uint16_t kFlagAuthoritative = 0x0400;
constexpr uint16_t kFlagTruncated = 0x0200;
constexpr uint16_t kFlagRecursionDesired = 0x0100;
constexpr uint16_t kFlagRecursionAvailable = 0x0080;
constexpr int kMaxPointerHops = 64;
constexpr size_t kMaxRecords = 1024;  // answer + authority records read from one response

Error Malformed(std::string what) { return MakeError(ErrorCode::kInvalidArgument, "DNS message: " + what); }

bool IsHostChar(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

char LowerChar(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string LowerString(std::string s) {
  for (char& c : s) c = LowerChar(c);
  return s;
}

// Bounds-checked reading of a message.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> msg) : msg_(msg) {}

  size_t pos() const { return pos_; }
  void Seek(size_t pos) { pos_ = pos; }
  bool Has(size_t n) const { return pos_ <= msg_.size() && msg_.size() - pos_ >= n; }

  bool U16(uint16_t* out) {
    if (!Has(2)) return false;
    *out = static_cast<uint16_t>(msg_[pos_] << 8 | msg_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool U32(uint32_t* out) {
    if (!Has(4)) return false;
    *out = uint32_t{msg_[pos_]} << 24 | uint32_t{msg_[pos_ + 1]} << 16 | uint32_t{msg_[pos_ + 2]} << 8 |
           uint32_t{msg_[pos_ + 3]};
    pos_ += 4;
    return true;
  }
  bool Skip(size_t n) {
    if (!Has(n)) return false;
    pos_ += n;
    return true;
  }

  // Reads a possibly compressed name at the current position and moves past
  // it. strict: host-name bytes only, case kept; otherwise other bytes become
  // \DDD and letters are lower-cased.
  Status Name(bool strict, std::string* out) {
    out->clear();
    size_t p = pos_;
    size_t segment_start = pos_;
    size_t end = 0;  // where the name ends in the original position
    bool jumped = false;
    int hops = 0;
    size_t wire_length = 0;
    while (true) {
      if (p >= msg_.size()) return Malformed("name runs past the end");
      uint8_t len = msg_[p];
      if ((len & 0xC0) == 0xC0) {
        if (p + 1 >= msg_.size()) return Malformed("compression pointer runs past the end");
        size_t target = static_cast<size_t>(len & 0x3F) << 8 | msg_[p + 1];
        // Strictly backwards from where this run of labels began: every jump
        // lands earlier than the last, so pointers cannot loop.
        if (target >= segment_start) return Malformed("compression pointer does not point backwards");
        if (++hops > kMaxPointerHops) return Malformed("too many compression pointers");
        if (!jumped) end = p + 2;
        jumped = true;
        p = segment_start = target;
        continue;
      }
      if (len & 0xC0) return Malformed("reserved label type");
      if (len == 0) {
        if (!jumped) end = p + 1;
        break;
      }
      wire_length += 1 + len;
      if (wire_length + 1 > kMaxNameLength) return Malformed("name longer than 255 bytes");
      if (p + 1 + len > msg_.size()) return Malformed("label runs past the end");
      if (!out->empty()) out->push_back('.');
      for (size_t i = 0; i < len; ++i) {
        uint8_t c = msg_[p + 1 + i];
        if (IsHostChar(c)) {
          out->push_back(strict ? static_cast<char>(c) : LowerChar(static_cast<char>(c)));
        } else if (strict) {
          return Malformed(fmt::format("name holds byte 0x{:02x}", c));
        } else {
          *out += fmt::format("\\{:03d}", c);
        }
      }
      p += 1 + len;
    }
    pos_ = end;
    return OkStatus();
  }

 private:
  std::span<const uint8_t> msg_;
  size_t pos_ = 0;
};

void PutU16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  PutU16(out, static_cast<uint16_t>(v >> 16));
  PutU16(out, static_cast<uint16_t>(v));
}

// The uncompressed wire form of a dotted name ("" is the root).
Result<std::vector<uint8_t>> EncodeName(const std::string& name) {
  std::vector<uint8_t> out;
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    size_t len = dot - start;
    if (len == 0 || len > kMaxLabelLength) return Malformed(fmt::format("bad label in name '{}'", name));
    out.push_back(static_cast<uint8_t>(len));
    out.insert(out.end(), name.begin() + static_cast<std::ptrdiff_t>(start), name.begin() + static_cast<std::ptrdiff_t>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  if (out.size() > kMaxNameLength) return Malformed("name longer than 255 bytes");
  return out;
}

void PutHeader(std::vector<uint8_t>& out, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an) {
  PutU16(out, id);
  PutU16(out, flags);
  PutU16(out, qd);
  PutU16(out, an);
  PutU16(out, 0);
  PutU16(out, 0);
}

struct Header {
  uint16_t id = 0, flags = 0, qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
};

Result<Header> ReadHeader(Reader& r) {
  Header h;
  if (!r.U16(&h.id) || !r.U16(&h.flags) || !r.U16(&h.qdcount) || !r.U16(&h.ancount) || !r.U16(&h.nscount) ||
      !r.U16(&h.arcount))
    return Malformed("shorter than a header");
  return h;
}

struct ParsedRecord {
  std::string owner;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  size_t rdata_pos = 0;
  uint16_t rdlength = 0;
  std::string target;  // CNAME only
};

Result<ParsedRecord> ReadRecord(Reader& r, std::span<const uint8_t> msg) {
  ParsedRecord rec;
  COVE_TRY(r.Name(false, &rec.owner));
  if (!r.U16(&rec.type) || !r.U16(&rec.klass) || !r.U32(&rec.ttl) || !r.U16(&rec.rdlength))
    return Malformed("record header runs past the end");
  if (rec.ttl & 0x80000000u) rec.ttl = 0;  // RFC 2181 8: a TTL with the top bit set is zero
  rec.rdata_pos = r.pos();
  if (!r.Has(rec.rdlength)) return Malformed("record data runs past the end");
  if (rec.type == kTypeCname) {
    Reader target(msg);
    target.Seek(rec.rdata_pos);
    COVE_TRY(target.Name(false, &rec.target));
    if (target.pos() != rec.rdata_pos + rec.rdlength) return Malformed("CNAME data length does not match its name");
  }
  r.Skip(rec.rdlength);
  return rec;
}

}  // namespace

std::optional<uint16_t> MessageId(std::span<const uint8_t> msg) {
  if (msg.size() < kHeaderSize) return std::nullopt;
  return static_cast<uint16_t>(msg[0] << 8 | msg[1]);
}

Result<Query> ParseQuery(std::span<const uint8_t> msg) {
  if (msg.size() > kMaxMessageSize) return Malformed("longer than 65535 bytes");
  Reader r(msg);
  COVE_ASSIGN_OR_RETURN(Header h, ReadHeader(r));
  if (h.flags & kFlagResponse) return Malformed("QR is set: a response, not a query");
  if (h.qdcount != 1) return Malformed(fmt::format("{} questions (want 1)", h.qdcount));
  if (h.ancount != 0 || h.nscount != 0) return Malformed("a query with answer or authority records");
  Query q;
  q.id = h.id;
  q.opcode = static_cast<uint8_t>((h.flags >> 11) & 0xF);
  q.recursion_desired = (h.flags & kFlagRecursionDesired) != 0;
  COVE_TRY(r.Name(true, &q.question.name));
  if (!r.U16(&q.question.type) || !r.U16(&q.question.klass)) return Malformed("question runs past the end");
  return q;
}

ResourceRecord AddressRecord(const std::string& name, const IpAddress& addr, uint32_t ttl) {
  ResourceRecord rr;
  rr.name = name;
  rr.ttl = ttl;
  size_t n = addr.family == AF_INET ? 4 : 16;
  rr.type = addr.family == AF_INET ? kTypeA : kTypeAaaa;
  rr.rdata.assign(addr.bytes, addr.bytes + n);
  return rr;
}

Result<ResourceRecord> CnameRecord(const std::string& name, const std::string& target, uint32_t ttl) {
  ResourceRecord rr;
  rr.name = name;
  rr.type = kTypeCname;
  rr.ttl = ttl;
  COVE_ASSIGN_OR_RETURN(rr.rdata, EncodeName(target));
  return rr;
}

std::vector<uint8_t> BuildResponse(const Query& query, Rcode rcode, const std::vector<ResourceRecord>& answers,
                                   size_t max_size, bool authoritative) {
  auto qname = EncodeName(query.question.name);
  if (!qname.ok()) return BuildHeaderOnlyResponse(query.id, Rcode::kFormErr);
  uint16_t flags = static_cast<uint16_t>(kFlagResponse | (query.opcode & 0xF) << 11 | kFlagRecursionAvailable |
                                         static_cast<uint16_t>(rcode));
  if (authoritative) flags |= kFlagAuthoritative;
  if (query.recursion_desired) flags |= kFlagRecursionDesired;

  std::vector<uint8_t> body;
  uint16_t count = 0;
  size_t size = kHeaderSize + qname->size() + 4;
  for (const auto& rr : answers) {
    auto name = EncodeName(rr.name);
    if (!name.ok() || rr.rdata.size() > 0xffff) continue;
    size_t rr_size = name->size() + 10 + rr.rdata.size();
    if (size + rr_size > max_size || count == 0xffff) {
      flags |= kFlagTruncated;
      break;
    }
    body.insert(body.end(), name->begin(), name->end());
    PutU16(body, rr.type);
    PutU16(body, kClassIn);
    PutU32(body, rr.ttl);
    PutU16(body, static_cast<uint16_t>(rr.rdata.size()));
    body.insert(body.end(), rr.rdata.begin(), rr.rdata.end());
    size += rr_size;
    ++count;
  }
  std::vector<uint8_t> out;
  out.reserve(size);
  PutHeader(out, query.id, flags, 1, count);
  out.insert(out.end(), qname->begin(), qname->end());
  PutU16(out, query.question.type);
  PutU16(out, query.question.klass);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> BuildHeaderOnlyResponse(uint16_t id, Rcode rcode) {
  std::vector<uint8_t> out;
  PutHeader(out, id, static_cast<uint16_t>(kFlagResponse | kFlagRecursionAvailable | static_cast<uint16_t>(rcode)), 0,
            0);
  return out;
}

Result<std::string> CanonicalName(const std::string& name) {
  std::string n = LowerString(name);
  if (!n.empty() && n.back() == '.') n.pop_back();
  if (n.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty host name");
  if (n.size() > 253) return MakeError(ErrorCode::kInvalidArgument, "host name longer than 253 characters");
  size_t label = 0;
  for (size_t i = 0; i <= n.size(); ++i) {
    if (i == n.size() || n[i] == '.') {
      if (label == 0 || label > kMaxLabelLength)
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("host name '{}' has an empty or too long label", n));
      label = 0;
    } else if (!IsHostChar(static_cast<uint8_t>(n[i]))) {
      return MakeError(ErrorCode::kInvalidArgument, fmt::format("host name '{}' holds a character DNS names cannot", n));
    } else {
      ++label;
    }
  }
  return n;
}

Result<std::vector<uint8_t>> BuildQuery(uint16_t id, const std::string& name, uint16_t type) {
  COVE_ASSIGN_OR_RETURN(std::string canonical, CanonicalName(name));
  COVE_ASSIGN_OR_RETURN(std::vector<uint8_t> qname, EncodeName(canonical));
  std::vector<uint8_t> out;
  PutHeader(out, id, kFlagRecursionDesired, 1, 0);
  out.insert(out.end(), qname.begin(), qname.end());
  PutU16(out, type);
  PutU16(out, kClassIn);
  return out;
}

Result<UpstreamAnswer> ParseUpstreamResponse(std::span<const uint8_t> msg, uint16_t id, const std::string& name,
                                             uint16_t type) {
  if (msg.size() > kMaxMessageSize) return Malformed("longer than 65535 bytes");
  COVE_ASSIGN_OR_RETURN(std::string want_name, CanonicalName(name));
  Reader r(msg);
  COVE_ASSIGN_OR_RETURN(Header h, ReadHeader(r));
  if (h.id != id) return Malformed("id does not match the query");
  if (!(h.flags & kFlagResponse)) return Malformed("QR is clear: not a response");
  if (((h.flags >> 11) & 0xF) != 0) return Malformed("opcode is not QUERY");
  if (h.qdcount != 1) return Malformed("response does not echo exactly one question");
  std::string qname;
  COVE_TRY(r.Name(false, &qname));
  uint16_t qtype = 0, qclass = 0;
  if (!r.U16(&qtype) || !r.U16(&qclass)) return Malformed("question runs past the end");
  if (qname != want_name || qtype != type || qclass != kClassIn) return Malformed("question does not match the query");

  UpstreamAnswer answer;
  answer.rcode = static_cast<Rcode>(h.flags & 0xF);
  answer.truncated = (h.flags & kFlagTruncated) != 0;
  if (answer.truncated) return answer;
  if (size_t{h.ancount} + h.nscount > kMaxRecords) return Malformed("too many records");

  std::vector<ParsedRecord> records;
  for (int i = 0; i < h.ancount; ++i) {
    COVE_ASSIGN_OR_RETURN(ParsedRecord rec, ReadRecord(r, msg));
    if (rec.klass == kClassIn) records.push_back(std::move(rec));
  }
  for (int i = 0; i < h.nscount; ++i) {
    COVE_ASSIGN_OR_RETURN(ParsedRecord rec, ReadRecord(r, msg));
    if (rec.type == kTypeSoa && rec.rdlength >= 22) {
      size_t at = rec.rdata_pos + rec.rdlength - 4;
      uint32_t minimum = uint32_t{msg[at]} << 24 | uint32_t{msg[at + 1]} << 16 | uint32_t{msg[at + 2]} << 8 | msg[at + 3];
      answer.negative_ttl = std::min(rec.ttl, minimum);
    }
  }
  if (answer.rcode != Rcode::kNoError) return answer;

  // Follow the CNAME chain from the question name, a bounded number of hops.
  std::string current = want_name;
  std::optional<uint32_t> ttl;
  auto use_ttl = [&](uint32_t t) { ttl = ttl ? std::min(*ttl, t) : t; };
  for (int hop = 0;; ++hop) {
    auto cname = std::find_if(records.begin(), records.end(),
                              [&](const ParsedRecord& rec) { return rec.type == kTypeCname && rec.owner == current; });
    if (cname == records.end()) break;
    if (hop == kMaxCnameHops) return answer;  // too long a chain: no addresses
    use_ttl(cname->ttl);
    current = cname->target;
  }
  size_t want_len = type == kTypeA ? 4 : 16;
  for (const auto& rec : records) {
    if (rec.type != type || rec.owner != current || rec.rdlength != want_len) continue;
    IpAddress addr;
    addr.family = type == kTypeA ? AF_INET : AF_INET6;
    std::memcpy(addr.bytes, msg.data() + rec.rdata_pos, want_len);
    if (std::find(answer.addresses.begin(), answer.addresses.end(), addr) == answer.addresses.end())
      answer.addresses.push_back(addr);
    use_ttl(rec.ttl);
  }
  if (!answer.addresses.empty()) answer.ttl = ttl.value_or(0);
  return answer;
}

}  // namespace cove::proxy::dns
