// DnsResponder: listeners, attribution, policy checks and the address -> name
// memory of dns_responder.h.
#include "proxy/dns_responder.h"

#include <sys/socket.h>

#include <atomic>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "base/log.h"
#include "io/listener.h"
#include "io/move_socket.h"
#include "proxy/asio_address.h"
#include "io/deadline.h"
#include "proxy/dns_message.h"

namespace cove::proxy {

namespace {

using udp = asio::ip::udp;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

constexpr size_t kUdpReceiveBuffer = 4096;
constexpr const char* kUnknownSource = "";  // TCP connection accounting of unattributed sources

// Addresses handed to one sandbox and the names they answered, least
// recently answered first out.
class NameMemory {
 public:
  void Put(const IpAddress& address, const std::string& name, size_t limit) {
    std::string key = address.ToString();
    if (auto it = index_.find(key); it != index_.end()) order_.erase(it->second);
    order_.push_back({key, name});
    index_[key] = std::prev(order_.end());
    while (order_.size() > limit) {
      index_.erase(order_.front().first);
      order_.pop_front();
    }
  }
  std::optional<std::string> Get(const IpAddress& address) const {
    auto it = index_.find(address.ToString());
    if (it == index_.end()) return std::nullopt;
    return it->second->second;
  }

 private:
  std::list<std::pair<std::string, std::string>> order_;  // (address, name)
  std::unordered_map<std::string, std::list<std::pair<std::string, std::string>>::iterator> index_;
};

// The ports a name could be used on under this policy: the web ports and every port a rule lists.
std::vector<uint16_t> CandidatePorts(const EgressPolicy& policy) {
  std::set<uint16_t> ports{443, 80};
  for (const auto& rule : policy.rules) ports.insert(rule.ports.begin(), rule.ports.end());
  std::vector<uint16_t> out{443, 80};
  for (uint16_t p : ports)
    if (p != 443 && p != 80) out.push_back(p);
  return out;
}

// Allowed when Decide() allows the name (and address, if given) on some
// candidate port; otherwise the decision on the first port, for its reason.
Decision DecideName(const EgressPolicy& policy, const std::string& name, const std::optional<IpAddress>& address) {
  std::optional<Decision> first;
  for (uint16_t port : CandidatePorts(policy)) {
    Destination dest;
    dest.host = name;
    dest.port = port;
    dest.address = address;
    Decision d = Decide(policy, dest);
    if (d.allow) return d;
    if (!first) first = d;
  }
  return *first;
}

}  // namespace

struct DnsResponder::Impl {
  Impl(asio::io_context& io, DnsResponderOptions opts, std::shared_ptr<Resolver> res, SandboxLookup look,
       DenialSink sink)
      : options(std::move(opts)),
        resolver(std::move(res)),
        lookup(std::move(look)),
        denials(std::move(sink)),
        udp_socket(io),
        registry(std::make_shared<io::ConnectionRegistry>(
            io::ConnectionLimits{options.max_tcp_connections_total, options.max_tcp_connections_per_sandbox})) {}

  Status Listen();
  // Each coroutine holds `self` (this Impl) from its creation to its end.
  Task<void> UdpLoop(std::shared_ptr<Impl> self);
  Task<void> ServeDatagram(std::shared_ptr<Impl> self, Bytes query, udp::endpoint sender);
  void Accept(std::shared_ptr<Impl> self, tcp::socket socket);
  Task<void> ServeTcp(std::shared_ptr<Impl> self, std::shared_ptr<tcp::socket> sock, io::ConnectionRegistry::Slot slot,
                      std::shared_ptr<Resolver> shard_resolver);
  // The response to one message from `source`, resolved with `with` (the
  // resolver of the calling thread's shard); empty: send nothing.
  Task<Bytes> Answer(IpAddress source, Bytes message, size_t max_size, Resolver& with);
  void ReportDenial(const std::string& sandbox_id, const std::string& name, const std::string& reason);
  void Stop();

  DnsResponderOptions options;
  std::shared_ptr<Resolver> resolver;
  SandboxLookup lookup;
  DenialSink denials;
  udp::socket udp_socket;
  // TCP connections by sandbox id ("" for unknown sources); one waiting for
  // its next query is idle and closed first to make room.
  std::shared_ptr<io::ConnectionRegistry> registry;
  std::shared_ptr<io::Listener> listener;
  uint16_t port = 0;
  std::atomic<bool> stopped{false};
  size_t next_shard = 0;           // home only
  size_t datagrams_in_flight = 0;  // home only (UDP)
  std::mutex mu;                   // guards the three below (TCP connections are on every shard)
  std::map<std::string, size_t> queries_in_flight;  // by sandbox id
  // Not owned (each is its ServeTcp's, destroyed with it on its shard).
  std::map<tcp::socket*, std::weak_ptr<tcp::socket>> open_connections;
  std::map<std::string, NameMemory> names;  // by sandbox id
};

Status DnsResponder::Impl::Listen() {
  boost::system::error_code ec;
  auto bind_address = asio::ip::make_address(options.bind_address, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, fmt::format("bad DNS bind address '{}'", options.bind_address));
  // UDP first; then TCP on the same port (an ephemeral UDP port may be taken
  // for TCP, so try a few).
  for (int attempt = 0; attempt < 16; ++attempt) {
    boost::system::error_code ignored;
    udp_socket.close(ignored);
    listener.reset();
    udp::endpoint udp_at(bind_address, options.port);
    udp_socket.open(udp_at.protocol(), ec);
    if (!ec) udp_socket.bind(udp_at, ec);
    if (ec) return SysError(fmt::format("binding DNS UDP {}:{}", options.bind_address, options.port), ec.value());
    port = udp_socket.local_endpoint().port();
    listener = io::Listener::Open(udp_socket.get_executor(), tcp::endpoint(bind_address, port), "dns (tcp)", registry,
                                  ec);
    if (!ec) return OkStatus();
    if (options.port != 0) break;
  }
  return SysError(fmt::format("binding DNS TCP {}:{}", options.bind_address, port), ec.value());
}

Task<void> DnsResponder::Impl::UdpLoop(std::shared_ptr<Impl> self) {
  Bytes buf(kUdpReceiveBuffer);
  while (!stopped) {
    udp::endpoint sender;
    boost::system::error_code ec;
    size_t n = co_await udp_socket.async_receive_from(asio::buffer(buf), sender,
                                                      asio::redirect_error(asio::use_awaitable, ec));
    if (stopped || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
    if (ec) continue;  // e.g. an ICMP error from an earlier send
    if (datagrams_in_flight >= options.max_queries_total) continue;  // overloaded: the client retries
    ++datagrams_in_flight;
    Bytes query(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    asio::co_spawn(udp_socket.get_executor(), ServeDatagram(self, std::move(query), sender), asio::detached);
  }
}

Task<void> DnsResponder::Impl::ServeDatagram([[maybe_unused]] std::shared_ptr<Impl> self, Bytes query,
                                             udp::endpoint sender) {
  IpAddress source = FromAsioAddress(sender.address());
  Bytes response = co_await Answer(source, std::move(query), dns::kMaxUdpSize, *resolver);
  if (!stopped && !response.empty()) {
    boost::system::error_code ec;
    co_await udp_socket.async_send_to(asio::buffer(response), sender, asio::redirect_error(asio::use_awaitable, ec));
  }
  --datagrams_in_flight;
}

void DnsResponder::Impl::Accept(std::shared_ptr<Impl> self, tcp::socket socket) {
  if (stopped) return;
  boost::system::error_code ec;
  tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return;
  std::optional<SandboxEgress> sandbox = lookup(FromAsioAddress(peer.address()));
  std::string account = sandbox ? sandbox->sandbox_id : kUnknownSource;
  ServingShard shard{udp_socket.get_executor(), resolver};
  if (!options.shards.empty()) shard = options.shards[next_shard++ % options.shards.size()];
  auto sock = std::make_shared<tcp::socket>(io::MoveSocket(std::move(socket), shard.executor, ec));
  if (ec) return;
  // A shed may come from any thread: it shuts the socket down, and ServeTcp
  // (uncounting first) closes it.
  auto slot = registry->Admit(account, [fd = sock->native_handle()] { ::shutdown(fd, SHUT_RDWR); });
  if (!slot) return;  // over the caps with none idle: the socket closes
  {
    std::lock_guard lock(mu);
    open_connections[sock.get()] = sock;
  }
  asio::co_spawn(shard.executor, ServeTcp(self, sock, std::move(*slot), std::move(shard.resolver)), asio::detached);
}

Task<void> DnsResponder::Impl::ServeTcp([[maybe_unused]] std::shared_ptr<Impl> self, std::shared_ptr<tcp::socket> sock,
                                         io::ConnectionRegistry::Slot admitted, std::shared_ptr<Resolver> shard_resolver) {
  std::optional<io::ConnectionRegistry::Slot> slot(std::move(admitted));
  boost::system::error_code ec;
  tcp::endpoint peer = sock->remote_endpoint(ec);
  IpAddress source = FromAsioAddress(peer.address());
  while (!ec && !stopped) {
    uint8_t length_bytes[2];
    {
      io::Deadline idle(*sock, Clock::now() + options.tcp_idle_timeout);
      slot->Idle();
      co_await asio::async_read(*sock, asio::buffer(length_bytes), asio::redirect_error(asio::use_awaitable, ec));
      slot->Busy();
      if (ec || slot->shed()) break;
      size_t length = size_t{length_bytes[0]} << 8 | length_bytes[1];
      if (length < dns::kHeaderSize || length > options.max_tcp_message_bytes) break;
      Bytes message(length);
      co_await asio::async_read(*sock, asio::buffer(message), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      Bytes response = co_await Answer(source, std::move(message), dns::kMaxMessageSize, *shard_resolver);
      if (response.empty() || stopped) break;
      Bytes framed(response.size() + 2);
      framed[0] = static_cast<uint8_t>(response.size() >> 8);
      framed[1] = static_cast<uint8_t>(response.size());
      std::copy(response.begin(), response.end(), framed.begin() + 2);
      co_await asio::async_write(*sock, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  slot.reset();  // uncounted before its descriptor may be reused
  sock->close(ec);
  std::lock_guard lock(mu);
  open_connections.erase(sock.get());
}

Task<Bytes> DnsResponder::Impl::Answer(IpAddress source, Bytes message, size_t max_size, Resolver& with) {
  Bytes nothing;
  auto id = dns::MessageId(message);
  if (!id) co_return nothing;
  // Never answer a response (QR set): two DNS servers could bounce errors forever.
  if (message[2] & 0x80) co_return nothing;
  auto parsed = dns::ParseQuery(message);
  if (!parsed.ok()) {
    Bytes formerr = dns::BuildHeaderOnlyResponse(*id, dns::Rcode::kFormErr);
    co_return formerr;
  }
  const dns::Query query = std::move(*parsed);
  std::vector<dns::ResourceRecord> no_answers;
  if (query.opcode != 0) co_return dns::BuildResponse(query, dns::Rcode::kNotImp, no_answers, max_size);

  std::optional<SandboxEgress> sandbox = lookup(source);
  if (!sandbox || !sandbox->policy) co_return dns::BuildResponse(query, dns::Rcode::kRefused, no_answers, max_size);
  const uint16_t type = query.question.type;
  if (query.question.klass != dns::kClassIn || (type != dns::kTypeA && type != dns::kTypeAaaa))
    co_return dns::BuildResponse(query, dns::Rcode::kRefused, no_answers, max_size);
  auto canonical = dns::CanonicalName(query.question.name);
  if (!canonical.ok()) co_return dns::BuildResponse(query, dns::Rcode::kRefused, no_answers, max_size);
  const std::string name = *canonical;
  const std::string sandbox_id = sandbox->sandbox_id;
  std::shared_ptr<const EgressPolicy> policy = sandbox->policy;

  Decision by_name = DecideName(*policy, name, std::nullopt);
  if (!by_name.allow) {
    if (type == dns::kTypeA) ReportDenial(sandbox_id, name, by_name.reason);
    co_return dns::BuildResponse(query, dns::Rcode::kNxDomain, no_answers, max_size);
  }
  if (type == dns::kTypeAaaa) co_return dns::BuildResponse(query, dns::Rcode::kNoError, no_answers, max_size);

  {
    std::lock_guard lock(mu);
    size_t& in_flight = queries_in_flight[sandbox_id];
    if (in_flight >= options.max_queries_per_sandbox)
      co_return dns::BuildResponse(query, dns::Rcode::kServFail, no_answers, max_size);
    ++in_flight;
  }
  Result<std::vector<IpAddress>> resolved = co_await with.Resolve(name, false, options.resolve_timeout);
  {
    std::lock_guard lock(mu);
    if (--queries_in_flight[sandbox_id] == 0) queries_in_flight.erase(sandbox_id);
  }
  if (stopped) co_return nothing;
  if (!resolved.ok()) {
    dns::Rcode rcode = resolved.error().code == ErrorCode::kNotFound ? dns::Rcode::kNxDomain : dns::Rcode::kServFail;
    if (rcode == dns::Rcode::kServFail) log::Debug("dns: {} for sandbox {}: {}", name, sandbox_id, resolved.error().ToString());
    co_return dns::BuildResponse(query, rcode, no_answers, max_size);
  }

  // Only addresses the policy would let the sandbox reach (no rebinding to
  // internal addresses through an allowed name).
  std::vector<dns::ResourceRecord> answers;
  std::string denied_reason;
  std::vector<IpAddress> remembered;
  for (const IpAddress& address : *resolved) {
    if (address.family != AF_INET) continue;
    Decision by_address = DecideName(*policy, name, address);
    if (!by_address.allow) {
      if (denied_reason.empty()) denied_reason = by_address.reason;
      continue;
    }
    remembered.push_back(address);
    answers.push_back(dns::AddressRecord(query.question.name, address, options.answer_ttl));
  }
  if (!remembered.empty()) {
    std::lock_guard lock(mu);
    NameMemory& memory = names[sandbox_id];
    for (const IpAddress& address : remembered) memory.Put(address, name, options.max_names_per_sandbox);
  }
  if (answers.empty()) {
    if (!denied_reason.empty()) {
      ReportDenial(sandbox_id, name, denied_reason);
      co_return dns::BuildResponse(query, dns::Rcode::kNxDomain, no_answers, max_size);
    }
    co_return dns::BuildResponse(query, dns::Rcode::kNoError, no_answers, max_size);
  }
  co_return dns::BuildResponse(query, dns::Rcode::kNoError, answers, max_size);
}

void DnsResponder::Impl::ReportDenial(const std::string& sandbox_id, const std::string& name,
                                      const std::string& reason) {
  if (!denials) return;
  DnsDenial denial{sandbox_id, name, reason};
  denials(denial);
}

void DnsResponder::Impl::Stop() {
  if (stopped.exchange(true)) return;
  boost::system::error_code ignored;
  udp_socket.close(ignored);
  if (listener) listener->Close();
  std::vector<std::shared_ptr<tcp::socket>> open;
  {
    std::lock_guard lock(mu);
    for (auto& [raw, weak] : open_connections)
      if (auto sock = weak.lock()) open.push_back(std::move(sock));
  }
  // Each closes on its own shard (in place when that is this thread).
  for (auto& sock : open) {
    auto ex = sock->get_executor();
    asio::dispatch(ex, [sock = std::move(sock)] {
      boost::system::error_code ignored;
      sock->close(ignored);
    });
  }
}

Result<std::unique_ptr<DnsResponder>> DnsResponder::Start(asio::io_context& io, DnsResponderOptions options,
                                                          std::shared_ptr<Resolver> resolver, SandboxLookup lookup,
                                                          DenialSink denials) {
  if (!resolver || !lookup) return MakeError(ErrorCode::kInvalidArgument, "DNS responder needs a resolver and a lookup");
  for (const auto& shard : options.shards)
    if (!shard.executor || !shard.resolver)
      return MakeError(ErrorCode::kInvalidArgument, "DNS responder: each shard needs an executor and a resolver");
  auto impl = std::make_shared<Impl>(io, std::move(options), std::move(resolver), std::move(lookup), std::move(denials));
  COVE_TRY(impl->Listen());
  asio::co_spawn(io, impl->UdpLoop(impl), asio::detached);
  std::weak_ptr<Impl> weak = impl;
  impl->listener->Start([weak](tcp::socket socket) {
    if (auto self = weak.lock()) self->Accept(self, std::move(socket));
  });
  return std::unique_ptr<DnsResponder>(new DnsResponder(std::move(impl)));
}

DnsResponder::~DnsResponder() { Stop(); }

uint16_t DnsResponder::port() const { return impl_->port; }

std::optional<std::string> DnsResponder::NameForAddress(const std::string& sandbox_id, const IpAddress& address) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->names.find(sandbox_id);
  if (it == impl_->names.end()) return std::nullopt;
  return it->second.Get(address);
}

void DnsResponder::ForgetSandbox(const std::string& sandbox_id) {
  std::lock_guard lock(impl_->mu);
  impl_->names.erase(sandbox_id);
}

void DnsResponder::Stop() { impl_->Stop(); }

}  // namespace cove::proxy
