// coved's CA (certificate_authority.h): key and certificate files, leaf
// minting with OpenSSL 3, the LRU cache of leaves.
#include "proxy/certificate_authority.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "policy/egress_policy.h"
#include "sys/io.h"

namespace cove::proxy {
namespace {

constexpr long kCaValiditySeconds = 10L * 365 * 24 * 3600;
constexpr long kLeafValiditySeconds = 2L * 24 * 3600;  // leaves are short-lived
constexpr auto kLeafReuse = std::chrono::hours(24);      // re-minted after half their validity

Error OpenSslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return MakeError(ErrorCode::kInternal, "CA: " + what + ": " + buf);
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return OpenSslError(std::string("extension ") + OBJ_nid2sn(nid));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (!ok) return OpenSslError("add extension");
  return OkStatus();
}

Status RandomSerial(X509* cert) {
  BIGNUM* bn = BN_new();
  bool ok = bn && BN_rand(bn, 120, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
            BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  if (!ok) return OpenSslError("serial number");
  return OkStatus();
}

// A certificate for `key` with subject CN `cn`, valid from an hour ago.
Result<X509*> NewCertificate(EVP_PKEY* key, const std::string& cn, long validity_seconds) {
  X509* cert = X509_new();
  if (!cert) return OpenSslError("X509_new");
  X509_set_version(cert, 2);
  if (auto s = RandomSerial(cert); !s.ok()) {
    X509_free(cert);
    return std::move(s).error();
  }
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), validity_seconds);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("cove"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  return cert;
}

}  // namespace

LeafCertificate::~LeafCertificate() {
  X509_free(certificate);
  EVP_PKEY_free(key);
}

CertificateAuthority::~CertificateAuthority() {
  X509_free(certificate_);
  EVP_PKEY_free(key_);
}

Result<std::shared_ptr<CertificateAuthority>> CertificateAuthority::LoadOrCreate(const std::string& dir,
                                                                                 size_t cache_capacity) {
  std::shared_ptr<CertificateAuthority> ca(new CertificateAuthority());
  ca->capacity_ = cache_capacity == 0 ? 1 : cache_capacity;
  const std::string key_path = dir + "/ca.key", cert_path = dir + "/ca.crt";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || ::chmod(dir.c_str(), 0700) != 0) return SysError("create " + dir);
  if (::access(key_path.c_str(), F_OK) == 0) {
    COVE_ASSIGN_OR_RETURN(std::string key_pem, sys::ReadFile(key_path, 1 << 16));
    COVE_ASSIGN_OR_RETURN(std::string cert_pem, sys::ReadFile(cert_path, 1 << 16));
    BioPtr kb(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
    BioPtr cb(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
    ca->key_ = PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr);
    ca->certificate_ = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr);
    if (!ca->key_ || !ca->certificate_) return OpenSslError("cannot read " + key_path + " / " + cert_path);
    if (X509_check_private_key(ca->certificate_, ca->key_) != 1)
      return OpenSslError(cert_path + " does not match " + key_path);
    ::chmod(key_path.c_str(), 0600);
    ca->certificate_pem_ = std::move(cert_pem);
    return ca;
  }
  ca->key_ = EVP_EC_gen("P-256");
  if (!ca->key_) return OpenSslError("generate the CA key");
  char host[64] = "";
  ::gethostname(host, sizeof host - 1);
  COVE_ASSIGN_OR_RETURN(ca->certificate_, NewCertificate(ca->key_, std::string("cove egress CA (") + host + ")",
                                                         kCaValiditySeconds));
  X509_set_issuer_name(ca->certificate_, X509_get_subject_name(ca->certificate_));
  COVE_TRY(AddExtension(ca->certificate_, ca->certificate_, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  COVE_TRY(AddExtension(ca->certificate_, ca->certificate_, NID_key_usage, "critical,keyCertSign,cRLSign"));
  COVE_TRY(AddExtension(ca->certificate_, ca->certificate_, NID_subject_key_identifier, "hash"));
  if (!X509_sign(ca->certificate_, ca->key_, EVP_sha256())) return OpenSslError("sign the CA certificate");
  BioPtr kb(BIO_new(BIO_s_mem())), cb(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(kb.get(), ca->key_, nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_bio_X509(cb.get(), ca->certificate_))
    return OpenSslError("encode the CA");
  ca->certificate_pem_ = BioText(cb.get());
  COVE_TRY(sys::WriteFileAtomic(key_path, BioText(kb.get()), 0600));
  COVE_TRY(sys::WriteFileAtomic(cert_path, ca->certificate_pem_, 0644));
  return ca;
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::Mint(const std::string& host) const {
  auto leaf = std::make_shared<LeafCertificate>();
  leaf->key = EVP_EC_gen("P-256");
  if (!leaf->key) return OpenSslError("generate a leaf key");
  COVE_ASSIGN_OR_RETURN(leaf->certificate, NewCertificate(leaf->key, host.substr(0, 64), kLeafValiditySeconds));
  X509* cert = leaf->certificate;
  X509_set_issuer_name(cert, X509_get_subject_name(certificate_));
  std::string san = (IpAddress::Parse(host) ? "IP:" : "DNS:") + host;
  COVE_TRY(AddExtension(cert, certificate_, NID_basic_constraints, "critical,CA:FALSE"));
  COVE_TRY(AddExtension(cert, certificate_, NID_key_usage, "critical,digitalSignature"));
  COVE_TRY(AddExtension(cert, certificate_, NID_ext_key_usage, "serverAuth"));
  COVE_TRY(AddExtension(cert, certificate_, NID_subject_alt_name, san.c_str()));
  COVE_TRY(AddExtension(cert, certificate_, NID_authority_key_identifier, "keyid:always"));
  if (!X509_sign(cert, key_, EVP_sha256())) return OpenSslError("sign a leaf for " + host);
  return std::shared_ptr<const LeafCertificate>(std::move(leaf));
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::LeafFor(const std::string& host) {
  if (host.empty() || host.size() > 253) return MakeError(ErrorCode::kInvalidArgument, "CA: bad host name");
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(host);
    if (it != index_.end()) {
      // Re-minted once half its validity has passed.
      const ASN1_TIME* not_before = X509_get0_notBefore(it->second->second->certificate);
      int days = 0, seconds = 0;
      ASN1_TIME_diff(&days, &seconds, not_before, nullptr);
      auto age = std::chrono::seconds(days * 86400L + seconds);
      if (age < kLeafReuse) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return lru_.front().second;
      }
      lru_.erase(it->second);
      index_.erase(it);
    }
  }
  COVE_ASSIGN_OR_RETURN(auto leaf, Mint(host));
  std::lock_guard lock(mu_);
  ++minted_;
  auto it = index_.find(host);
  if (it != index_.end()) {
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.emplace_front(host, leaf);
  index_[host] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return leaf;
}

size_t CertificateAuthority::minted() const {
  std::lock_guard lock(mu_);
  return minted_;
}

}  // namespace cove::proxy
