#include "bench/mini_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

namespace cove::bench {
namespace {

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

MiniHttp::MiniHttp(std::string host, int port, std::string token)
    : host_(std::move(host)), token_(std::move(token)), port_(port) {}

MiniHttp::~MiniHttp() {
  if (fd_ >= 0) ::close(fd_);
}

bool MiniHttp::Connect() {
  if (fd_ >= 0) return true;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port_));
  inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  buf_.clear();
  return true;
}

bool MiniHttp::ReadLine(std::string* line) {
  for (;;) {
    size_t nl = buf_.find("\r\n");
    if (nl != std::string::npos) {
      *line = buf_.substr(0, nl);
      buf_.erase(0, nl + 2);
      return true;
    }
    char tmp[65536];
    ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

bool MiniHttp::ReadN(size_t n, std::string* out) {
  while (buf_.size() < n) {
    char tmp[65536];
    ssize_t r = ::read(fd_, tmp, sizeof tmp);
    if (r <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(r));
  }
  out->append(buf_, 0, n);
  buf_.erase(0, n);
  return true;
}

bool MiniHttp::ReadResponse(MiniResponse* out) {
  std::string line;
  if (!ReadLine(&line) || line.size() < 12) return false;
  out->status = std::atoi(line.c_str() + 9);
  long length = -1;
  bool chunked = false;
  while (ReadLine(&line) && !line.empty()) {
    for (auto& c : line) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (line.rfind("content-length:", 0) == 0) length = std::atol(line.c_str() + 15);
    if (line.rfind("transfer-encoding:", 0) == 0 && line.find("chunked") != std::string::npos) chunked = true;
  }
  if (!chunked) return length < 0 || ReadN(static_cast<size_t>(length), &out->body);
  for (;;) {
    if (!ReadLine(&line)) return false;
    size_t n = std::strtoul(line.c_str(), nullptr, 16);
    if (n == 0) return ReadLine(&line);
    if (!ReadN(n, &out->body) || !ReadLine(&line)) return false;
  }
}

MiniResponse MiniHttp::Call(const std::string& method, const std::string& path, const std::string& body) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!Connect()) return {};
    std::string head = method + " " + path + " HTTP/1.1\r\nHost: " + host_ + "\r\nAuthorization: Bearer " + token_ +
                       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\n\r\n";
    MiniResponse res;
    if (WriteAll(fd_, head) && WriteAll(fd_, body) && ReadResponse(&res)) return res;
    ::close(fd_);
    fd_ = -1;
  }
  return {};
}

}  // namespace cove::bench
