// DNS wire format (proxy/dns_message.h): the queries sandboxes send coved and
// the responses upstream servers send back are both hostile.
//
// Input: a name (NUL-terminated), one byte choosing A or AAAA, then the
// message. Properties: parsing never reads out of bounds or loops; an accepted
// query has a bounded host-name-shaped name, and the response built for it
// fits its size limit and reads back as an answer to that very query; an
// accepted upstream answer holds addresses of the requested family only.
#include <string>

#include "fuzz.h"
#include "proxy/dns_message.h"

namespace dns = cove::proxy::dns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cove::fuzz::Input in(data, size);
  std::string name(in.Field(300));
  uint16_t type = (in.Byte() & 1) ? dns::kTypeAaaa : dns::kTypeA;
  std::string_view rest = in.Rest();
  std::span<const uint8_t> msg(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());

  auto query = dns::ParseQuery(msg);
  if (query.ok()) {
    const std::string& qname = query->question.name;
    FUZZ_CHECK(qname.size() <= 253);
    for (char c : qname)
      FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.');
    FUZZ_CHECK(dns::MessageId(msg) == query->id);
    auto addr = cove::proxy::IpAddress::Parse("192.0.2.1");
    std::vector<dns::ResourceRecord> answers(40, dns::AddressRecord(qname, *addr, 60));
    std::vector<uint8_t> response = dns::BuildResponse(*query, dns::Rcode::kNoError, answers);
    FUZZ_CHECK(response.size() <= dns::kMaxUdpSize);
    if (!qname.empty() && query->question.klass == dns::kClassIn &&
        (query->question.type == dns::kTypeA || query->question.type == dns::kTypeAaaa) && query->opcode == 0) {
      auto back = dns::ParseUpstreamResponse(response, query->id, qname, query->question.type);
      FUZZ_CHECK(back.ok());
      FUZZ_CHECK(back->rcode == dns::Rcode::kNoError);
    }
  } else if (auto id = dns::MessageId(msg)) {
    FUZZ_CHECK(dns::BuildHeaderOnlyResponse(*id, dns::Rcode::kFormErr).size() == dns::kHeaderSize);
  }

  if (auto id = dns::MessageId(msg)) {
    auto answer = dns::ParseUpstreamResponse(msg, *id, name, type);
    if (answer.ok()) {
      FUZZ_CHECK(answer->addresses.size() <= msg.size() / 4);
      for (const auto& a : answer->addresses) FUZZ_CHECK(a.family == (type == dns::kTypeA ? AF_INET : AF_INET6));
      if (answer->truncated) FUZZ_CHECK(answer->addresses.empty());
    }
  }

  if (auto built = dns::BuildQuery(0x4242, name, type); built.ok()) {
    auto reparsed = dns::ParseQuery(*built);
    FUZZ_CHECK(reparsed.ok());
    FUZZ_CHECK(reparsed->question.name == *dns::CanonicalName(name));
  }
  return 0;
}
