// Test-only upstream servers and client helpers (upstreams.h).
#include "proxy/testing/upstreams.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace cove::proxy::testing {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool FillSockaddr(const std::string& address, uint16_t port, sockaddr_storage* storage, socklen_t* len) {
  std::memset(storage, 0, sizeof *storage);
  auto* v4 = reinterpret_cast<sockaddr_in*>(storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof *v4;
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(storage);
  if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof *v6;
    return true;
  }
  return false;
}

// OpenSSL writes with write(2): a peer the proxy closed must not kill the
// test with SIGPIPE (coved ignores it too).
void IgnoreSigpipe() { signal(SIGPIPE, SIG_IGN); }

void SetTimeouts(int fd) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

int ConnectTcp(const std::string& address, uint16_t port, const std::string& source) {
  IgnoreSigpipe();
  sockaddr_storage sa;
  socklen_t len;
  if (!FillSockaddr(address, port, &sa, &len)) return -1;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  SetTimeouts(fd);
  if (!source.empty()) {
    sockaddr_storage src;
    socklen_t src_len;
    if (!FillSockaddr(source, 0, &src, &src_len) || bind(fd, reinterpret_cast<sockaddr*>(&src), src_len) != 0) {
      close(fd);
      return -1;
    }
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ReadToEnd(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool ClosedWithoutData(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

std::optional<std::string> HttpMessage::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (Lower(k) == Lower(name)) return v;
  }
  return std::nullopt;
}

int HttpMessage::status() const {
  size_t space = start_line.find(' ');
  if (space == std::string::npos) return 0;
  return std::atoi(start_line.c_str() + space + 1);
}

bool HttpReader::Fill() {
  char buf[4096];
  ssize_t n = recv(fd_, buf, sizeof buf, 0);
  if (n <= 0) return false;
  buffered_.append(buf, static_cast<size_t>(n));
  return true;
}

std::optional<std::string> HttpReader::Line() {
  while (true) {
    size_t end = buffered_.find("\r\n");
    if (end != std::string::npos) {
      std::string line = buffered_.substr(0, end);
      buffered_.erase(0, end + 2);
      return line;
    }
    if (!Fill()) return std::nullopt;
  }
}

std::optional<std::string> HttpReader::Take(size_t n) {
  while (buffered_.size() < n) {
    if (!Fill()) return std::nullopt;
  }
  std::string out = buffered_.substr(0, n);
  buffered_.erase(0, n);
  return out;
}

bool HttpReader::ReadHead(HttpMessage* message) {
  auto start = Line();
  if (!start) return false;
  message->start_line = *start;
  message->headers.clear();
  while (true) {
    auto line = Line();
    if (!line) return false;
    if (line->empty()) return true;
    size_t colon = line->find(':');
    if (colon == std::string::npos) return false;
    std::string value = line->substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    message->headers.emplace_back(line->substr(0, colon), value);
  }
}

std::optional<std::string> HttpReader::ReadChunk() {
  auto size_line = Line();
  if (!size_line) return std::nullopt;
  size_t size = std::stoul(*size_line, nullptr, 16);
  if (size == 0) {
    while (true) {  // trailers
      auto line = Line();
      if (!line) return std::nullopt;
      if (line->empty()) return std::string();
    }
  }
  auto data = Take(size);
  if (!data || !Line()) return std::nullopt;
  return data;
}

bool HttpReader::ReadBody(HttpMessage* message, bool response, bool head_request) {
  message->body.clear();
  int status = response ? message->status() : 0;
  if (head_request || (status >= 100 && status < 200) || status == 204 || status == 304) return true;
  auto te = message->Header("Transfer-Encoding");
  if (te && Lower(*te).find("chunked") != std::string::npos) {
    while (true) {
      auto chunk = ReadChunk();
      if (!chunk) return false;
      if (chunk->empty()) return true;
      message->body += *chunk;
    }
  }
  if (auto length = message->Header("Content-Length")) {
    auto body = Take(std::stoul(*length));
    if (!body) return false;
    message->body = *body;
    return true;
  }
  if (!response) return true;
  while (Fill()) {
  }
  message->body = std::move(buffered_);
  buffered_.clear();
  return true;
}

std::optional<HttpMessage> HttpReader::Read(bool response, bool head_request) {
  HttpMessage message;
  if (!ReadHead(&message) || !ReadBody(&message, response, head_request)) return std::nullopt;
  return message;
}

Server::~Server() = default;

bool Server::Listen(const std::string& address, uint16_t port) {
  IgnoreSigpipe();
  sockaddr_storage sa;
  socklen_t len;
  if (!FillSockaddr(address, port, &sa, &len)) return false;
  listen_fd_ = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(listen_fd_, 64) != 0) return false;
  sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                            : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return true;
}

void Server::StartAccepting() {
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      SetTimeouts(fd);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      int id = ++connections_;
      std::lock_guard lock(mu_);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd, id] { Serve(fd, id); });
    }
  });
}

void Server::StopServing() {
  stopping_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  for (int fd : fds_) close(fd);
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

HttpUpstream::HttpUpstream(const std::string& address, uint16_t port, Responder respond)
    : respond_(std::move(respond)) {
  if (Listen(address, port)) StartAccepting();
}

HttpUpstream::~HttpUpstream() { StopServing(); }

std::vector<HttpMessage> HttpUpstream::requests() {
  std::lock_guard lock(mu_);
  return requests_;
}

HttpUpstream::Responder HttpUpstream::Fixed(std::string body) {
  return [body](const HttpMessage&, int fd) {
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  };
}

void HttpUpstream::Serve(int fd, int connection) {
  HttpReader reader(fd);
  while (true) {
    auto request = reader.Read(false);
    if (!request) return;
    request->connection = connection;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(*request);
    }
    respond_(*request, fd);
    auto connection_header = request->Header("Connection");
    if (connection_header && Lower(*connection_header) == "close") {
      shutdown(fd, SHUT_WR);
      return;
    }
  }
}

EchoUpstream::EchoUpstream(const std::string& address, uint16_t port) {
  if (Listen(address, port)) StartAccepting();
}

EchoUpstream::~EchoUpstream() { StopServing(); }

void EchoUpstream::Serve(int fd, int) {
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    if (!SendAll(fd, std::string_view(buf, static_cast<size_t>(n)))) return;
  }
}

struct TlsUpstream::Context {
  SSL_CTX* ctx = nullptr;
  ~Context() {
    if (ctx) SSL_CTX_free(ctx);
  }
};

TlsUpstream::TlsUpstream(const std::string& address, uint16_t port) : context_(std::make_unique<Context>()) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("cove-test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  context_->ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(context_->ctx, cert);
  SSL_CTX_use_PrivateKey(context_->ctx, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (Listen(address, port)) StartAccepting();
}

TlsUpstream::~TlsUpstream() { StopServing(); }

std::vector<std::string> TlsUpstream::server_names() {
  std::lock_guard lock(mu_);
  return server_names_;
}

void TlsUpstream::Serve(int fd, int) {
  SSL* ssl = SSL_new(context_->ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    {
      std::lock_guard lock(mu_);
      server_names_.push_back(sni ? sni : "");
    }
    std::string line;
    char c;
    while (SSL_read(ssl, &c, 1) == 1 && c != '\n') line.push_back(c);
    std::string answer = "tls says: " + line + "\n";
    SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
}

std::optional<std::string> TlsExchange(int fd, const std::string& sni, const std::string& line) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl, sni.c_str());
  std::optional<std::string> answer;
  if (SSL_connect(ssl) == 1) {
    std::string out = line + "\n";
    if (SSL_write(ssl, out.data(), static_cast<int>(out.size())) > 0) {
      std::string got;
      char c;
      while (SSL_read(ssl, &c, 1) == 1 && c != '\n') got.push_back(c);
      if (!got.empty()) answer = got;
    }
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return answer;
}

std::string MakeClientHello(const std::string& sni) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl, sni.c_str());
  SSL_connect(ssl);  // wants to read the ServerHello: the ClientHello is in `out`
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string hello(data, static_cast<size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return hello;
}

}  // namespace cove::proxy::testing
