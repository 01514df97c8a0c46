// ScanClientHello on real ClientHellos from OpenSSL, their prefixes, the same
// hello split over two records, and bytes that are not TLS.
#include "proxy/tls_client_hello.h"

#include <gtest/gtest.h>

#include "proxy/testing/upstreams.h"

namespace cove::proxy {
namespace {

using Outcome = ClientHelloScan::Outcome;

TEST(ClientHelloScan, FindsTheServerName) {
  std::string hello = testing::MakeClientHello("Api.Example.COM");
  ASSERT_GT(hello.size(), 50u);
  ClientHelloScan scan = ScanClientHello(hello);
  ASSERT_EQ(scan.outcome, Outcome::kComplete) << scan.problem;
  EXPECT_EQ(scan.server_name, "api.example.com");
}

TEST(ClientHelloScan, NoServerName) {
  ClientHelloScan scan = ScanClientHello(testing::MakeClientHello(""));
  ASSERT_EQ(scan.outcome, Outcome::kComplete) << scan.problem;
  EXPECT_FALSE(scan.server_name);
}

TEST(ClientHelloScan, EveryPrefixNeedsMore) {
  std::string hello = testing::MakeClientHello("a.test");
  for (size_t n = 0; n < hello.size(); ++n) {
    ASSERT_EQ(ScanClientHello(std::string_view(hello).substr(0, n)).outcome, Outcome::kNeedMore) << n;
  }
}

TEST(ClientHelloScan, HandshakeSplitOverTwoRecords) {
  std::string hello = testing::MakeClientHello("split.test");
  std::string fragment = hello.substr(5);
  size_t half = fragment.size() / 2;
  auto record = [&](std::string_view payload) {
    std::string r = hello.substr(0, 3);
    r.push_back(static_cast<char>(payload.size() >> 8));
    r.push_back(static_cast<char>(payload.size() & 0xff));
    r.append(payload);
    return r;
  };
  std::string split = record(std::string_view(fragment).substr(0, half)) + record(std::string_view(fragment).substr(half));
  ClientHelloScan scan = ScanClientHello(split);
  ASSERT_EQ(scan.outcome, Outcome::kComplete) << scan.problem;
  EXPECT_EQ(scan.server_name, "split.test");
  EXPECT_EQ(ScanClientHello(split.substr(0, split.size() - 1)).outcome, Outcome::kNeedMore);
}

TEST(ClientHelloScan, PlainHttpIsNotTls) {
  EXPECT_EQ(ScanClientHello("GET / HTTP/1.1\r\n").outcome, Outcome::kNotTls);
  EXPECT_EQ(ScanClientHello("G").outcome, Outcome::kNotTls);
}

TEST(ClientHelloScan, CorruptedLengthsAreMalformed) {
  std::string hello = testing::MakeClientHello("a.test");
  std::string bad = hello;
  bad[5] = 2;  // handshake type ServerHello
  EXPECT_EQ(ScanClientHello(bad).outcome, Outcome::kMalformed);
  std::string zero = hello.substr(0, 3) + std::string("\0\0", 2);
  EXPECT_EQ(ScanClientHello(zero).outcome, Outcome::kMalformed);
}

}  // namespace
}  // namespace cove::proxy
