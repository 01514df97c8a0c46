// coved: the cove host daemon. Wiring, configuration and signals only.
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>

#include "api/http_server.h"
#include "api/routes.h"
#include "base/log.h"
#include "daemon/egress.h"
#include "io/connection_limits.h"
#include "io/heap_keeper.h"
#include "io/shards.h"
#include "manager/images.h"
#include "manager/kernel_sandbox_host.h"
#include "manager/manager.h"
#include "manager/store.h"
#include "preview/preview_server.h"
#include "sys/io.h"

namespace cove {
namespace {

namespace fs = std::filesystem;

struct Config {
  std::string listen = "127.0.0.1:7070";
  std::string state_dir = "/var/lib/cove";
  std::string token;
  std::string agent_path;
  std::string interpreter_dir;
  std::string log_level = "info";
  std::string network = "sealed";
  EgressConfig egress;
  std::string preview_listen = "127.0.0.1:7071";
  std::string preview_domain = "localhost";
  std::string preview_tls_cert, preview_tls_key;
  size_t max_connections_per_listener = 0;  // 0: derived from RLIMIT_NOFILE
  size_t max_connections_per_address = 0;
  size_t io_threads = 0;  // 0: one per CPU
};

// The connection caps of every listener: the flags, else derived from the
// descriptor limit (io/connection_limits.h).
io::ConnectionLimits ConnectionCaps(const Config& c) {
  io::ConnectionLimits caps = c.max_connections_per_listener ? io::LimitsForListenerCap(c.max_connections_per_listener)
                                                            : io::DefaultConnectionLimits();
  if (c.max_connections_per_address) caps.max_per_key = c.max_connections_per_address;
  return caps;
}

// "HOST:PORT" or "[V6]:PORT".
bool SplitHostPort(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size() || text.size() - colon > 6) return false;
  std::string p = text.substr(colon + 1);
  if (p.find_first_not_of("0123456789") != std::string::npos || std::stoul(p) > 65535) return false;
  *host = text.substr(0, colon);
  if (host->size() > 2 && host->front() == '[') *host = host->substr(1, host->size() - 2);
  *port = static_cast<uint16_t>(std::stoul(p));
  return true;
}

Result<std::string> LoadOrCreateToken(const Config& c) {
  if (!c.token.empty()) return c.token;
  if (const char* env = getenv("COVE_TOKEN"); env && *env) return std::string(env);
  std::string path = c.state_dir + "/api-token";
  if (auto existing = sys::ReadFile(path, 4096); existing.ok()) {
    std::string t = *existing;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    if (!t.empty()) return t;
  }
  unsigned char raw[32];
  if (getrandom(raw, sizeof raw, 0) != sizeof raw) return SysError("getrandom");
  std::string token;
  for (unsigned char b : raw) token += fmt::format("{:02x}", b);
  COVE_TRY(sys::WriteFileAtomic(path, token + "\n", 0600));
  log::Info("created API token in {}", path);
  return token;
}

// Sandboxes reach their layers and image as their own host ids: every parent
// of the state directory must be searchable by others.
std::string UnsearchableParent(const std::string& state_dir) {
  fs::path p = fs::absolute(state_dir).lexically_normal();
  for (fs::path dir = p.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && !(st.st_mode & S_IXOTH)) return dir.string();
    if (dir == dir.root_path()) break;
  }
  return {};
}

std::string DefaultAgentPath() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / "cove-agent").string();
}

// The code-interpreter runners: share/cove/interpreter beside coved's bin/.
std::string DefaultInterpreterDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return (self.parent_path().parent_path() / "share" / "cove" / "interpreter").lexically_normal().string();
}

int Run(const Config& c) {
  if (c.log_level == "debug") log::SetLevel(log::Level::kDebug);
  size_t colon = c.listen.rfind(':');
  if (colon == std::string::npos) {
    log::Error("--listen must be HOST:PORT, got {}", c.listen);
    return 2;
  }
  std::error_code ec;
  fs::create_directories(c.state_dir, ec);
  if (ec || ::chmod(c.state_dir.c_str(), 0711) != 0) {
    log::Error("cannot create state directory {}: {}", c.state_dir, ec ? ec.message() : strerror(errno));
    return 1;
  }
  if (auto dir = UnsearchableParent(c.state_dir); !dir.empty()) {
    log::Error("{} is not searchable by others (mode o-x): sandboxes could not reach their files under {}; "
               "choose another --state-dir or chmod o+x {}", dir, c.state_dir, dir);
    return 1;
  }
  auto token = LoadOrCreateToken(c);
  if (!token.ok()) {
    log::Error("cannot set up the API token: {}", token.error().ToString());
    return 1;
  }
  auto store = Store::Open(c.state_dir + "/cove.db");
  if (!store.ok()) {
    log::Error("{}", store.error().ToString());
    return 1;
  }

  asio::io_context io(1);
  // Declared before everything bound to the shards' io_contexts, so destroyed after it.
  io::Shards shards(io, c.io_threads ? c.io_threads : io::Shards::DefaultCount());
  io::KeepHeapForTransfers(io.get_executor());  // file bodies without a page fault per 4 KiB
  Images images(io.get_executor(), c.state_dir + "/images");
  if (auto s = images.Init(); !s.ok()) {
    log::Error("cannot prepare images: {}", s.error().ToString());
    return 1;
  }
  std::string agent = c.agent_path.empty() ? DefaultAgentPath() : c.agent_path;
  if (::access(agent.c_str(), X_OK) != 0) {
    log::Error("cove-agent not found at {} (use --agent)", agent);
    return 1;
  }
  io::ConnectionLimits caps = ConnectionCaps(c);
  EgressConfig egress_config = c.egress;
  egress_config.sealed = c.network == "sealed";
  egress_config.state_dir = c.state_dir;
  egress_config.connection_caps = caps;
  // The sandbox host needs the networks, the networks the proxy's ports, and the
  // manager the sandbox host: the proxy, DNS and previews find sandboxes in
  // what the manager publishes (from every io thread).
  RunningSandboxes running;
  auto egress = Egress::Start(io, shards, egress_config, &running);
  if (!egress.ok()) {
    log::Error("cannot set up sandbox networking: {}", egress.error().ToString());
    return 1;
  }
  auto sandbox_host = KernelSandboxHost::Open(c.state_dir, agent, &images, (*egress)->networks());
  if (!sandbox_host.ok()) {
    log::Error("cannot set up isolation: {}", sandbox_host.error().ToString());
    return 1;
  }
  (*sandbox_host)->SetTrustedCa((*egress)->ca_certificate_pem());
  std::string interpreter = c.interpreter_dir.empty() ? DefaultInterpreterDir() : c.interpreter_dir;
  if (interpreter != "none") {
    std::error_code ec;
    if (fs::is_directory(interpreter, ec)) {
      (*sandbox_host)->SetInterpreterDir(interpreter);
    } else {
      log::Warn("no code-interpreter runners at {} (--interpreter-dir): code contexts are unavailable", interpreter);
    }
  }
  Manager manager(io.get_executor(), store->get(), sandbox_host->get());
  manager.UseShards(&shards);
  manager.PublishTo(&running);
  manager.SetImageChecker([&images](const std::string& name) { return images.Exists(name); });
  api::EgressRoutes egress_routes(&manager, (*egress)->directory(), (*egress)->denials(), (*egress)->sealed());
  preview::PreviewOptions popts;
  if (!SplitHostPort(c.preview_listen, &popts.listen_host, &popts.listen_port)) {
    log::Error("--preview-listen must be HOST:PORT, got {}", c.preview_listen);
    return 2;
  }
  popts.domain = c.preview_domain;
  popts.max_connections = caps.max_connections;
  popts.max_connections_per_address = caps.max_per_key;
  popts.tls_cert_file = c.preview_tls_cert;
  popts.tls_key_file = c.preview_tls_key;
  if ((*egress)->networks()) popts.plan = (*egress)->networks()->plan();
  // Connections go to the io threads in turn (accepted at home).
  popts.connection_executor = [&shards, next = size_t{0}]() mutable { return shards.at(next++ % shards.size()); };
  auto preview_server = preview::PreviewServer::Listen(io.get_executor(), popts,
                                                       [&running](const std::string& id) { return running.ById(id); });
  if (!preview_server.ok()) {
    log::Error("{}", preview_server.error().ToString());
    return 1;
  }
  api::ExposureRoutes::Options eopts;
  eopts.domain = c.preview_domain;
  eopts.listen_port = (*preview_server)->port();
  eopts.tls = (*preview_server)->tls();
  eopts.on_unexposed = [&preview_server](const std::string& id, uint16_t port) { (*preview_server)->Unexposed(id, port); };
  api::ExposureRoutes exposure_routes(&manager, eopts);
  api::SecretRoutes secret_routes((*egress)->secrets());
  api::Api api(&manager, &images, *token, &egress_routes, &exposure_routes, &secret_routes);

  api::HttpServerOptions hopts;
  hopts.listen_host = c.listen.substr(0, colon);
  if (hopts.listen_host.size() > 2 && hopts.listen_host.front() == '[')
    hopts.listen_host = hopts.listen_host.substr(1, hopts.listen_host.size() - 2);
  hopts.listen_port = static_cast<uint16_t>(std::stoi(c.listen.substr(colon + 1)));
  hopts.spool_dir = c.state_dir + "/tmp";
  fs::create_directories(hopts.spool_dir, ec);
  hopts.spool_to_file = &api::Api::WantsSpooledBody;
  hopts.max_connections = caps.max_connections;
  hopts.max_connections_per_address = caps.max_per_key;
  hopts.on_head = [&manager](api::HttpRequest& req) { req.arrival = manager.Arrive(); };
  // Connections go to the io threads in turn (accepted at home).
  hopts.connection_executor = [&shards, next = size_t{0}]() mutable { return shards.at(next++ % shards.size()); };
  auto server = api::HttpServer::Listen(io.get_executor(), hopts,
                                        [&api](api::HttpRequest& req) { return api.Handle(req); });
  if (!server.ok()) {
    log::Error("{}", server.error().ToString());
    return 1;
  }

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    log::Info("signal {}: stopping; sandboxes keep running and are adopted at the next start", sig);
    // Deleted sandboxes still being removed get a moment to finish.
    asio::co_spawn(io, [&]() -> Task<void> {
      co_await manager.FinishReaping(std::chrono::seconds(10));
      io.stop();
    }, asio::detached);
  });
  shards.Start();
  asio::co_spawn(io, [&]() -> Task<void> {
    co_await manager.Adopt();
    (*server)->Start();
    (*preview_server)->Start();
    log::Info("preview URLs: {}://PORT-ID-TOKEN.{}:{}", (*preview_server)->tls() ? "https" : "http",
              c.preview_domain, (*preview_server)->port());
    log::Info("coved listening on {}:{} (state {}, token in {}/api-token)", hopts.listen_host, (*server)->port(),
              c.state_dir, c.state_dir);
    log::Info("connection caps: {} per listener, {} per client address (sandbox, for the egress proxy); "
              "{} io threads", caps.max_connections, caps.max_per_key, shards.size());
  }, asio::detached);
  io.run();
  shards.Stop();
  (*egress)->Shutdown(manager.Empty());
  if (manager.Empty()) {
    if (auto s = (*sandbox_host)->ReleaseHostResources(); !s.ok())
      log::Warn("cannot release coved's host resources: {}", s.error().ToString());
  }
  return 0;
}

}  // namespace
}  // namespace cove

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  cove::Config c;
  CLI::App app{"coved: the cove sandbox daemon"};
  app.add_option("--listen", c.listen, "HOST:PORT to serve the API on")->capture_default_str();
  app.add_option("--state-dir", c.state_dir, "directory for coved's state")->capture_default_str();
  app.add_option("--token", c.token, "API bearer token (default: COVE_TOKEN, else STATE/api-token)");
  app.add_option("--agent", c.agent_path, "path of cove-agent (default: next to coved)");
  app.add_option("--interpreter-dir", c.interpreter_dir,
                 "code-interpreter runners, bound read-only into sandboxes (default: ../share/cove/interpreter "
                 "beside coved; none: no code contexts)");
  app.add_option("--log-level", c.log_level, "debug|info")->capture_default_str();
  app.add_option("--network", c.network, "sealed: each sandbox's only way out is coved's egress proxy; "
                 "none: loopback only")->check(CLI::IsMember({"sealed", "none"}))->capture_default_str();
  app.add_option("--network-subnet", c.egress.subnet, "IPv4 range of the sandboxes' veths (a /31 each)")
      ->capture_default_str();
  app.add_option("--network-pool", c.egress.pool_size, "sandbox networks kept ready")->capture_default_str();
  app.add_option("--dns-server", c.egress.dns_servers, "upstream DNS server IP[:PORT] (repeatable; default: "
                 "the nameservers of /etc/resolv.conf)");
  app.add_option("--preview-listen", c.preview_listen, "HOST:PORT of the preview listener (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--preview-domain", c.preview_domain, "preview URLs are PORT-ID-TOKEN.DOMAIN")->capture_default_str();
  app.add_option("--preview-tls-cert", c.preview_tls_cert, "PEM certificate chain: the preview listener speaks TLS");
  app.add_option("--preview-tls-key", c.preview_tls_key, "PEM private key of --preview-tls-cert");
  app.add_option("--egress-default", c.egress.default_policy, "egress policy (JSON, as PUT /v1/sandboxes/ID/egress) "
                 "of sandboxes that have none; default: {\"enableInternet\": true}");
  app.add_option("--max-connections-per-listener", c.max_connections_per_listener,
                 "open connections per listener (API, preview, egress proxy); idle ones are closed first to make "
                 "room (default: a quarter of the descriptor limit, RLIMIT_NOFILE)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-connections-per-address", c.max_connections_per_address,
                 "open connections per listener from one client address (for the egress proxy: one sandbox) "
                 "(default: a quarter of --max-connections-per-listener)")
      ->check(CLI::PositiveNumber);
  app.add_option("--io-threads", c.io_threads,
                 "io threads (shards): each sandbox's agent connection and API handlers run on one, chosen by "
                 "its id (default: half the CPUs, at least 1)")
      ->check(CLI::PositiveNumber);
  app.add_option("--upstream-ca", c.egress.upstream_ca, "PEM file of extra CAs that intercepted upstreams' "
                 "certificates may chain to (besides /etc/ssl/certs)")->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);
  return cove::Run(c);
}
