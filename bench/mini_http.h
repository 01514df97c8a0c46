// MiniHttp: a tiny blocking HTTP/1.1 keep-alive client for benchmarks, so the
// client adds as little as possible to the latencies being measured.
#pragma once

#include <string>

namespace cove::bench {

struct MiniResponse {
  int status = 0;
  std::string body;
};

class MiniHttp {
 public:
  MiniHttp(std::string host, int port, std::string token);
  ~MiniHttp();
  // Sends one request on the kept-alive connection (reconnecting if needed).
  // Reads a Content-Length or chunked body completely. status 0 on I/O error.
  MiniResponse Call(const std::string& method, const std::string& path, const std::string& body = "");

 private:
  bool Connect();
  bool ReadResponse(MiniResponse* out);
  bool ReadLine(std::string* line);
  bool ReadN(size_t n, std::string* out);
  std::string host_, token_;
  int port_, fd_ = -1;
  std::string buf_;
};

}  // namespace cove::bench
