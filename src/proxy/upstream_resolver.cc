// UpstreamResolver: queries, retries, anti-spoofing checks and the cache.
#include "proxy/upstream_resolver.h"

#include <sys/random.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "proxy/asio_address.h"
#include "io/deadline.h"
#include "proxy/dns_message.h"

namespace cove::proxy {

namespace {

using Clock = std::chrono::steady_clock;
using udp = asio::ip::udp;
using tcp = asio::ip::tcp;

constexpr int kRounds = 2;                  // passes over the server list while time remains
constexpr size_t kUdpReceiveBuffer = 4096;  // we send no EDNS, so real replies are <= 512

uint16_t RandomId() {
  uint16_t id = 0;
  if (getrandom(&id, sizeof id, 0) == sizeof id) return id;
  static thread_local std::mt19937 fallback{std::random_device{}()};
  return static_cast<uint16_t>(fallback());
}

std::string EndpointText(const udp::endpoint& e) {
  if (e.address().is_v6()) return fmt::format("[{}]:{}", e.address().to_string(), e.port());
  return fmt::format("{}:{}", e.address().to_string(), e.port());
}

std::string CacheKey(const std::string& name, uint16_t type) { return fmt::format("{}/{}", name, type); }

}  // namespace

std::vector<std::string> NameserversFromResolvConf(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string keyword, address;
    if (!(words >> keyword >> address) || keyword != "nameserver") continue;
    if (address.find('%') != std::string::npos) continue;  // link-local with a scope: not supported
    if (IpAddress::Parse(address)) out.push_back(address);
  }
  return out;
}

Result<udp::endpoint> ParseServerEndpoint(const std::string& text) {
  std::string host = text;
  uint16_t port = 53;
  auto bad = [&] { return MakeError(ErrorCode::kInvalidArgument, fmt::format("bad DNS server address '{}'", text)); };
  if (!IpAddress::Parse(text)) {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return bad();
    host = text.substr(0, colon);
    std::string port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos && host.front() != '[') return bad();  // v6 needs brackets with a port
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad();
    int p = std::stoi(port_text);
    if (p < 1 || p > 65535) return bad();
    port = static_cast<uint16_t>(p);
  }
  auto addr = IpAddress::Parse(host);
  if (!addr) return bad();
  return udp::endpoint(ToAsioAddress(*addr), port);
}

Result<std::shared_ptr<UpstreamResolver>> UpstreamResolver::Create(asio::any_io_executor executor,
                                                                   UpstreamResolverOptions options) {
  std::vector<std::string> names = options.servers;
  if (names.empty()) {
    std::ifstream f("/etc/resolv.conf");
    std::stringstream text;
    text << f.rdbuf();
    names = NameserversFromResolvConf(text.str());
    if (names.empty()) return MakeError(ErrorCode::kNotFound, "no DNS server configured and none in /etc/resolv.conf");
  }
  std::vector<udp::endpoint> servers;
  for (const auto& name : names) {
    COVE_ASSIGN_OR_RETURN(udp::endpoint e, ParseServerEndpoint(name));
    servers.push_back(e);
  }
  return std::shared_ptr<UpstreamResolver>(new UpstreamResolver(std::move(executor), std::move(options), std::move(servers)));
}

UpstreamResolver::UpstreamResolver(asio::any_io_executor executor, UpstreamResolverOptions options,
                                   std::vector<udp::endpoint> servers)
    : executor_(std::move(executor)), options_(std::move(options)), servers_(std::move(servers)) {}

Task<Result<std::vector<IpAddress>>> UpstreamResolver::Resolve(std::string host, bool want_ipv6,
                                                               std::chrono::milliseconds timeout) {
  auto self = shared_from_this();  // alive until this resolution ends
  if (auto literal = IpAddress::Parse(host)) {
    std::vector<IpAddress> itself{*literal};
    co_return itself;
  }
  auto canonical = dns::CanonicalName(host);
  if (!canonical.ok()) co_return std::move(canonical).error();
  Clock::time_point deadline = Clock::now() + timeout;
  std::string name = *canonical;
  Result<std::vector<IpAddress>> v4 = co_await ResolveType(name, dns::kTypeA, deadline);
  if (!want_ipv6) co_return v4;
  Result<std::vector<IpAddress>> v6 = co_await ResolveType(name, dns::kTypeAaaa, deadline);
  if (v4.ok() && v6.ok()) {
    std::vector<IpAddress> both = std::move(*v4);
    both.insert(both.end(), v6->begin(), v6->end());
    co_return both;
  }
  if (v4.ok()) co_return v4;
  if (v6.ok()) co_return v6;
  co_return v4;  // both failed: A's reason (kNotFound when neither has records)
}

Task<Result<std::vector<IpAddress>>> UpstreamResolver::ResolveType(std::string name, uint16_t type,
                                                                   Clock::time_point deadline) {
  std::string key = CacheKey(name, type);
  if (auto it = cache_.find(key); it != cache_.end()) {
    if (it->second.expires > Clock::now()) {
      if (it->second.found) co_return it->second.addresses;
      Error not_found = MakeError(ErrorCode::kNotFound, fmt::format("{} has no such records (cached)", name));
      co_return not_found;
    }
    cache_.erase(it);
  }
  Lookup lookup = co_await AskServers(name, type, deadline);
  Remember(key, lookup);
  co_return std::move(lookup.result);
}

Task<UpstreamResolver::Lookup> UpstreamResolver::AskServers(std::string name, uint16_t type, Clock::time_point deadline) {
  Lookup out;
  out.result = MakeError(ErrorCode::kUnavailable, fmt::format("no DNS server answered for {}", name));
  for (int round = 0; round < kRounds; ++round) {
    for (const udp::endpoint& server : servers_) {
      Clock::time_point now = Clock::now();
      if (now >= deadline) {
        out.result = MakeError(ErrorCode::kTimeout, fmt::format("resolving {} timed out", name));
        co_return out;
      }
      Clock::time_point server_deadline = std::min(deadline, now + options_.per_server_timeout);
      uint16_t id = RandomId();
      auto query = dns::BuildQuery(id, name, type);
      if (!query.ok()) {
        out.result = std::move(query).error();
        co_return out;
      }
      std::vector<uint8_t> query_bytes = std::move(*query);
      Result<std::vector<uint8_t>> reply = co_await AskUdp(server, query_bytes, id, name, type, server_deadline);
      if (!reply.ok()) {
        out.result = MakeError(ErrorCode::kUnavailable,
                               fmt::format("DNS server {}: {}", EndpointText(server), reply.error().message));
        continue;
      }
      auto answer = dns::ParseUpstreamResponse(*reply, id, name, type);
      if (answer.ok() && answer->truncated) {
        reply = co_await AskTcp(server, query_bytes, server_deadline);
        if (!reply.ok()) {
          out.result = MakeError(ErrorCode::kUnavailable, fmt::format("DNS server {} over TCP: {}",
                                                                      EndpointText(server), reply.error().message));
          continue;
        }
        answer = dns::ParseUpstreamResponse(*reply, id, name, type);
      }
      if (!answer.ok() || answer->truncated) {
        out.result = MakeError(ErrorCode::kUnavailable,
                               fmt::format("DNS server {} sent an unusable answer for {}", EndpointText(server), name));
        continue;
      }
      std::chrono::seconds negative_ttl = answer->negative_ttl ? std::chrono::seconds(*answer->negative_ttl)
                                                               : options_.max_negative_ttl;
      if (answer->rcode == dns::Rcode::kNxDomain) {
        out.result = MakeError(ErrorCode::kNotFound, fmt::format("{}: no such domain", name));
        out.ttl = std::min(negative_ttl, options_.max_negative_ttl);
        co_return out;
      }
      if (answer->rcode != dns::Rcode::kNoError) {
        out.result = MakeError(ErrorCode::kUnavailable, fmt::format("DNS server {} answered rcode {} for {}",
                                                                    EndpointText(server), static_cast<int>(answer->rcode), name));
        continue;
      }
      if (answer->addresses.empty()) {
        out.result = MakeError(ErrorCode::kNotFound, fmt::format("{} has no {} records", name, type == dns::kTypeA ? "A" : "AAAA"));
        out.ttl = std::min(negative_ttl, options_.max_negative_ttl);
        co_return out;
      }
      out.ttl = std::min(std::chrono::seconds(answer->ttl), options_.max_ttl);
      out.result = std::move(answer->addresses);
      co_return out;
    }
  }
  if (Clock::now() >= deadline)
    out.result = MakeError(ErrorCode::kTimeout, fmt::format("resolving {} timed out", name));
  co_return out;
}

Task<Result<std::vector<uint8_t>>> UpstreamResolver::AskUdp(udp::endpoint server, std::vector<uint8_t> query, uint16_t id,
                                                            std::string name, uint16_t type, Clock::time_point deadline) {
  udp::socket sock(executor_);
  boost::system::error_code ec;
  sock.open(server.protocol(), ec);
  if (!ec) sock.connect(server, ec);  // the kernel then drops datagrams from any other source
  if (ec) co_return SysError("DNS socket", ec.value());
  io::Deadline guard(sock, deadline);
  co_await sock.async_send(asio::buffer(query), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return SysError("sending the DNS query", ec.value());
  std::vector<uint8_t> buf(kUdpReceiveBuffer);
  while (true) {
    size_t n = co_await sock.async_receive(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return MakeError(ErrorCode::kTimeout, "no reply in time");
    if (ec) co_return SysError("receiving the DNS reply", ec.value());
    std::span<const uint8_t> reply(buf.data(), n);
    // A reply to some other query (a spoofing attempt or a late answer) is ignored.
    if (!dns::ParseUpstreamResponse(reply, id, name, type).ok()) continue;
    buf.resize(n);
    co_return buf;
  }
}

Task<Result<std::vector<uint8_t>>> UpstreamResolver::AskTcp(udp::endpoint server, std::vector<uint8_t> query,
                                                            Clock::time_point deadline) {
  tcp::socket sock(executor_);
  io::Deadline guard(sock, deadline);
  boost::system::error_code ec;
  tcp::endpoint target(server.address(), server.port());
  co_await sock.async_connect(target, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == asio::error::operation_aborted) co_return MakeError(ErrorCode::kTimeout, "TCP connect timed out");
  if (ec) co_return SysError("connecting over TCP", ec.value());
  std::vector<uint8_t> framed(query.size() + 2);
  framed[0] = static_cast<uint8_t>(query.size() >> 8);
  framed[1] = static_cast<uint8_t>(query.size());
  std::copy(query.begin(), query.end(), framed.begin() + 2);
  co_await asio::async_write(sock, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return SysError("sending the DNS query over TCP", ec.value());
  uint8_t length_bytes[2];
  co_await asio::async_read(sock, asio::buffer(length_bytes), asio::redirect_error(asio::use_awaitable, ec));
  if (ec == asio::error::operation_aborted) co_return MakeError(ErrorCode::kTimeout, "no TCP reply in time");
  if (ec) co_return SysError("reading the DNS reply over TCP", ec.value());
  size_t length = size_t{length_bytes[0]} << 8 | length_bytes[1];
  std::vector<uint8_t> reply(length);
  co_await asio::async_read(sock, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
  if (ec == asio::error::operation_aborted) co_return MakeError(ErrorCode::kTimeout, "no TCP reply in time");
  if (ec) co_return SysError("reading the DNS reply over TCP", ec.value());
  co_return reply;
}

void UpstreamResolver::Remember(const std::string& key, const Lookup& lookup) {
  bool found = lookup.result.ok();
  bool not_found = !found && lookup.result.error().code == ErrorCode::kNotFound;
  if ((!found && !not_found) || lookup.ttl.count() <= 0 || options_.max_cache_entries == 0) return;
  Clock::time_point now = Clock::now();
  if (cache_.size() >= options_.max_cache_entries) {
    std::erase_if(cache_, [&](const auto& kv) { return kv.second.expires <= now; });
  }
  while (cache_.size() >= options_.max_cache_entries) {
    auto soonest = std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
      return a.second.expires < b.second.expires;
    });
    cache_.erase(soonest);
  }
  CacheEntry entry;
  entry.expires = now + lookup.ttl;
  entry.found = found;
  if (found) entry.addresses = lookup.result.value();
  cache_[key] = std::move(entry);
}

}  // namespace cove::proxy
