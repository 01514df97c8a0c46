// UpstreamResolver: the Resolver coved uses, a small stub resolver that asks
// the configured recursive servers over UDP (TCP when an answer comes back
// truncated). Anti-spoofing: a fresh socket (random source port) and a random
// id per query; only a reply from the server asked, with the same id and the
// same question, is accepted; anything else is ignored while waiting.
// A server that times out, fails or answers SERVFAIL/REFUSED is followed by
// the next. Answers are cached, positive and negative, bounded in entries and
// with TTLs capped. IP literals resolve to themselves without a query.
// Runs on one executor's thread (not thread-safe: its sockets and cache are
// that thread's); coved makes one per io thread (proxy/serving_shard.h).
// Keep it in a shared_ptr (Create) while resolutions are in flight.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "io/asio.h"
#include "proxy/resolver.h"

namespace cove::proxy {

struct UpstreamResolverOptions {
  // "ip", "ip:port", "[v6]:port"; empty: the nameservers of /etc/resolv.conf.
  std::vector<std::string> servers;
  std::chrono::milliseconds per_server_timeout{2000};
  size_t max_cache_entries = 4096;
  std::chrono::seconds max_ttl{300};           // positive answers are cached at most this long
  std::chrono::seconds max_negative_ttl{30};   // NXDOMAIN / no records, at most this long
};

// The "nameserver" addresses of resolv.conf text (scoped IPv6 ones skipped).
std::vector<std::string> NameserversFromResolvConf(std::string_view text);
// "ip", "ip:port" or "[v6]:port" (port 53 when absent).
Result<asio::ip::udp::endpoint> ParseServerEndpoint(const std::string& text);

class UpstreamResolver : public Resolver, public std::enable_shared_from_this<UpstreamResolver> {
 public:
  // kInvalidArgument for a bad server address, kNotFound when no server is
  // configured and resolv.conf names none.
  static Result<std::shared_ptr<UpstreamResolver>> Create(asio::any_io_executor executor,
                                                          UpstreamResolverOptions options);

  Task<Result<std::vector<IpAddress>>> Resolve(std::string host, bool want_ipv6,
                                               std::chrono::milliseconds timeout) override;

  const std::vector<asio::ip::udp::endpoint>& servers() const { return servers_; }
  size_t cache_size() const { return cache_.size(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct CacheEntry {
    Clock::time_point expires;
    bool found = false;  // false: NXDOMAIN or no records
    std::vector<IpAddress> addresses;
  };
  // The outcome of one name and type: addresses, kNotFound, or why no server answered.
  struct Lookup {
    Result<std::vector<IpAddress>> result = std::vector<IpAddress>{};
    std::chrono::seconds ttl{0};
  };

  UpstreamResolver(asio::any_io_executor executor, UpstreamResolverOptions options,
                   std::vector<asio::ip::udp::endpoint> servers);
  Task<Result<std::vector<IpAddress>>> ResolveType(std::string name, uint16_t type, Clock::time_point deadline);
  Task<Lookup> AskServers(std::string name, uint16_t type, Clock::time_point deadline);
  // One exchange with one server: the raw reply matching (id, name, type), or an error.
  Task<Result<std::vector<uint8_t>>> AskUdp(asio::ip::udp::endpoint server, std::vector<uint8_t> query, uint16_t id,
                                            std::string name, uint16_t type, Clock::time_point deadline);
  Task<Result<std::vector<uint8_t>>> AskTcp(asio::ip::udp::endpoint server, std::vector<uint8_t> query,
                                            Clock::time_point deadline);
  void Remember(const std::string& key, const Lookup& lookup);

  asio::any_io_executor executor_;
  UpstreamResolverOptions options_;
  std::vector<asio::ip::udp::endpoint> servers_;
  std::map<std::string, CacheEntry> cache_;
};

}  // namespace cove::proxy
