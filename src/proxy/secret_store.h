// coved's secrets: named values the egress proxy puts into requests (header
// templates "{{secret.NAME}}" of egress rules, and placeholders) so that a
// sandbox never holds them. Persisted in one JSON file (STATE/secrets.json,
// mode 0600, written atomically); the API lists names, never values.
//
// A placeholder secret is bound to host patterns and has a random token
// ("cove-placeholder-<hex>") a sandbox may hold instead of the value: the
// proxy replaces the token with the value in requests to a bound host and
// blocks requests carrying it anywhere else (an exfiltration attempt).
// Thread-safe: readers take an immutable snapshot.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "policy/egress_policy.h"

namespace cove::proxy {

struct Secret {
  std::string name;                 // [A-Z0-9_]{1,64}
  std::string value;
  std::string placeholder;          // empty: not a placeholder secret
  std::vector<HostPattern> hosts;   // where the placeholder may be replaced
};

// An immutable view of every secret.
struct SecretSet {
  std::vector<Secret> secrets;
  const Secret* Find(std::string_view name) const;
  // True when some placeholder secret is bound to a pattern matching host.
  bool BindsHost(const std::string& host) const;
  bool HasPlaceholders() const;
};

class SecretStore {
 public:
  // Loads `path` if it exists (an unreadable or malformed file is an error).
  static Result<std::shared_ptr<SecretStore>> Open(std::string path);
  static bool ValidName(std::string_view name);

  // Creates or replaces a secret; with placeholder set, an existing
  // placeholder token of the same secret is kept (sandboxes holding it keep
  // working), otherwise a new one is drawn. Returns the stored secret.
  Result<Secret> Put(const std::string& name, std::string value, bool placeholder, std::vector<HostPattern> hosts);
  // kNotFound when absent.
  Status Remove(const std::string& name);
  std::shared_ptr<const SecretSet> Snapshot() const;

 private:
  explicit SecretStore(std::string path) : path_(std::move(path)) {}
  Status Save(const SecretSet& set) const;
  std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const SecretSet> set_ = std::make_shared<SecretSet>();
};

}  // namespace cove::proxy
