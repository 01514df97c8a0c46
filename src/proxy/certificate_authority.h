// coved's certificate authority for TLS interception: an ECDSA P-256 key and
// a self-signed CA certificate in STATE/ca/ (ca.key mode 0600, never given to
// a sandbox; ca.crt 0644, added to every sandbox's trust store), created at
// first start and loaded afterwards. It mints short-lived leaf certificates
// for one host name (SAN DNS) or IP literal (SAN IP), each with its own P-256
// key, and keeps the newest ones in a bounded LRU cache so repeated
// connections to a host reuse them. Thread-safe.
#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "base/error.h"

namespace cove::proxy {

// A leaf certificate and its private key (owned; freed with the object).
struct LeafCertificate {
  X509* certificate = nullptr;
  EVP_PKEY* key = nullptr;
  LeafCertificate() = default;
  LeafCertificate(const LeafCertificate&) = delete;
  LeafCertificate& operator=(const LeafCertificate&) = delete;
  ~LeafCertificate();
};

class CertificateAuthority {
 public:
  // Loads dir/ca.key and dir/ca.crt, or creates both (and dir, mode 0700).
  static Result<std::shared_ptr<CertificateAuthority>> LoadOrCreate(const std::string& dir,
                                                                    size_t cache_capacity = 512);
  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  const std::string& certificate_pem() const { return certificate_pem_; }
  X509* certificate() const { return certificate_; }
  // A leaf for `host` (a DNS name or an IP literal), from the cache when present.
  Result<std::shared_ptr<const LeafCertificate>> LeafFor(const std::string& host);
  size_t minted() const;  // leaves minted so far (cache misses)

 private:
  CertificateAuthority() = default;
  Result<std::shared_ptr<const LeafCertificate>> Mint(const std::string& host) const;

  EVP_PKEY* key_ = nullptr;
  X509* certificate_ = nullptr;
  std::string certificate_pem_;
  size_t capacity_ = 512;
  mutable std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<const LeafCertificate>>> lru_;  // newest first
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
  size_t minted_ = 0;
};

}  // namespace cove::proxy
