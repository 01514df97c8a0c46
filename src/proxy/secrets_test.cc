// coved's CA (mint, cache, chain verification with OpenSSL, reload), the
// secret store (names, placeholders, file mode) and header templates.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "proxy/certificate_authority.h"
#include "proxy/secret_store.h"
#include "proxy/secret_templates.h"

namespace cove::proxy {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/cove-secrets-test-XXXXXX";
  return ::mkdtemp(tmpl);
}

mode_t Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Verifies `leaf` against `ca` only, for `host`.
int Verify(X509* ca, X509* leaf, const std::string& host) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (IpAddress::Parse(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  }
  int ok = X509_verify_cert(ctx);
  int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return err;
}

TEST(CertificateAuthority, CreatesFilesWithModesAndReloads) {
  std::string dir = TempDir() + "/ca";
  auto ca = CertificateAuthority::LoadOrCreate(dir);
  ASSERT_TRUE(ca.ok()) << ca.error().ToString();
  EXPECT_EQ(Mode(dir + "/ca.key"), 0600u);
  EXPECT_EQ(Mode(dir + "/ca.crt"), 0644u);
  EXPECT_NE((*ca)->certificate_pem().find("BEGIN CERTIFICATE"), std::string::npos);
  auto again = CertificateAuthority::LoadOrCreate(dir);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ((*again)->certificate_pem(), (*ca)->certificate_pem());
  // A leaf of the reloaded CA verifies against the first one's certificate.
  auto leaf = (*again)->LeafFor("api.example.test");
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(Verify((*ca)->certificate(), (*leaf)->certificate, "api.example.test"), X509_V_OK);
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(CertificateAuthority, MintsVerifiableLeavesForNamesAndAddresses) {
  std::string dir = TempDir();
  auto ca = CertificateAuthority::LoadOrCreate(dir + "/ca");
  ASSERT_TRUE(ca.ok());
  auto leaf = (*ca)->LeafFor("api.tls.test");
  ASSERT_TRUE(leaf.ok()) << leaf.error().ToString();
  EXPECT_EQ(Verify((*ca)->certificate(), (*leaf)->certificate, "api.tls.test"), X509_V_OK);
  EXPECT_EQ(Verify((*ca)->certificate(), (*leaf)->certificate, "other.test"), X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(X509_check_private_key((*leaf)->certificate, (*leaf)->key), 1);
  // P-256, short validity.
  EXPECT_EQ(EVP_PKEY_get_bits((*leaf)->key), 256);
  int days = 0, seconds = 0;
  ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter((*leaf)->certificate));
  EXPECT_LE(days, 3);
  auto ip = (*ca)->LeafFor("198.51.100.11");
  ASSERT_TRUE(ip.ok());
  EXPECT_EQ(Verify((*ca)->certificate(), (*ip)->certificate, "198.51.100.11"), X509_V_OK);
  // A leaf of another CA does not verify against this one.
  auto other = CertificateAuthority::LoadOrCreate(dir + "/other");
  ASSERT_TRUE(other.ok());
  auto foreign = (*other)->LeafFor("api.tls.test");
  ASSERT_TRUE(foreign.ok());
  EXPECT_NE(Verify((*ca)->certificate(), (*foreign)->certificate, "api.tls.test"), X509_V_OK);
  std::filesystem::remove_all(dir);
}

TEST(CertificateAuthority, CachesLeavesInABoundedLru) {
  std::string dir = TempDir();
  auto ca = CertificateAuthority::LoadOrCreate(dir + "/ca", 2);
  ASSERT_TRUE(ca.ok());
  auto a1 = (*ca)->LeafFor("a.test");
  auto a2 = (*ca)->LeafFor("a.test");
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(a1->get(), a2->get());
  EXPECT_EQ((*ca)->minted(), 1u);
  ASSERT_TRUE((*ca)->LeafFor("b.test").ok());
  ASSERT_TRUE((*ca)->LeafFor("a.test").ok());  // a is the newest again
  ASSERT_TRUE((*ca)->LeafFor("c.test").ok());  // evicts b
  EXPECT_EQ((*ca)->minted(), 3u);
  ASSERT_TRUE((*ca)->LeafFor("a.test").ok());
  EXPECT_EQ((*ca)->minted(), 3u);
  ASSERT_TRUE((*ca)->LeafFor("b.test").ok());
  EXPECT_EQ((*ca)->minted(), 4u);
  std::filesystem::remove_all(dir);
}

HostPattern Pat(const std::string& s) { return *HostPattern::Parse(s); }

TEST(SecretStore, NamesPlaceholdersAndFile) {
  std::string dir = TempDir();
  auto store = SecretStore::Open(dir + "/secrets.json");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->Put("lower", "v", false, {}).ok());
  EXPECT_FALSE((*store)->Put("", "v", false, {}).ok());
  EXPECT_FALSE((*store)->Put(std::string(65, 'A'), "v", false, {}).ok());
  ASSERT_TRUE((*store)->Put("GITHUB_TOKEN", "ghp_real", false, {}).ok());
  auto p = (*store)->Put("API_KEY", "sk-real", true, {Pat("api.tls.test")});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->placeholder.rfind("cove-placeholder-", 0), 0u);
  EXPECT_EQ(Mode(dir + "/secrets.json"), 0600u);
  // Rotating the value keeps the token.
  auto rotated = (*store)->Put("API_KEY", "sk-new", true, {Pat("api.tls.test")});
  ASSERT_TRUE(rotated.ok());
  EXPECT_EQ(rotated->placeholder, p->placeholder);
  auto reopened = SecretStore::Open(dir + "/secrets.json");
  ASSERT_TRUE(reopened.ok());
  auto set = (*reopened)->Snapshot();
  ASSERT_NE(set->Find("API_KEY"), nullptr);
  EXPECT_EQ(set->Find("API_KEY")->value, "sk-new");
  EXPECT_TRUE(set->BindsHost("api.tls.test"));
  EXPECT_FALSE(set->BindsHost("tls.test"));
  EXPECT_TRUE((*reopened)->Remove("GITHUB_TOKEN").ok());
  EXPECT_EQ((*reopened)->Remove("GITHUB_TOKEN").error().code, ErrorCode::kNotFound);
  std::filesystem::remove_all(dir);
}

SecretSet Set() {
  SecretSet set;
  set.secrets.push_back(Secret{"GITHUB_TOKEN", "ghp_real", "", {}});
  set.secrets.push_back(Secret{"API_KEY", "sk-real", "cove-placeholder-abc123", {Pat("*.tls.test")}});
  return set;
}

TEST(SecretTemplates, Expands) {
  SecretSet set = Set();
  auto v = ExpandSecretTemplate("Bearer {{secret.GITHUB_TOKEN}}", set);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "Bearer ghp_real");
  EXPECT_EQ(*ExpandSecretTemplate("{{ secret.API_KEY }}:{{secret.GITHUB_TOKEN}}", set), "sk-real:ghp_real");
  EXPECT_EQ(*ExpandSecretTemplate("plain", set), "plain");
  auto missing = ExpandSecretTemplate("Bearer {{secret.NOPE}}", set);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("NOPE"), std::string::npos);
  EXPECT_FALSE(ExpandSecretTemplate("Bearer {{secret.X", set).ok());
  EXPECT_FALSE(ExpandSecretTemplate("{{env.HOME}}", set).ok());
}

TEST(SecretTemplates, PlaceholdersOnlyForBoundHosts) {
  SecretSet set = Set();
  std::string bound = "Bearer cove-placeholder-abc123";
  auto out = ReplacePlaceholders(bound, "api.tls.test", set);
  EXPECT_TRUE(out.replaced);
  EXPECT_TRUE(out.exfiltration.empty());
  EXPECT_EQ(bound, "Bearer sk-real");
  std::string elsewhere = "/q?k=cove-placeholder-abc123";
  out = ReplacePlaceholders(elsewhere, "allowed.test", set);
  EXPECT_FALSE(out.replaced);
  EXPECT_EQ(out.exfiltration, "API_KEY");
  EXPECT_EQ(elsewhere, "/q?k=cove-placeholder-abc123");
  std::string none = "nothing here";
  out = ReplacePlaceholders(none, "allowed.test", set);
  EXPECT_FALSE(out.replaced);
  EXPECT_TRUE(out.exfiltration.empty());
}

}  // namespace
}  // namespace cove::proxy
