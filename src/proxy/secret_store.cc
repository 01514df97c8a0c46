// SecretStore (secret_store.h): the JSON file and its snapshots.
#include "proxy/secret_store.h"

#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "policy/header_template.h"
#include "sys/io.h"

namespace cove::proxy {
namespace {

using Json = nlohmann::json;

Result<std::string> NewPlaceholder() {
  unsigned char raw[24];
  if (getrandom(raw, sizeof raw, 0) != sizeof raw) return SysError("getrandom");
  static const char kHex[] = "0123456789abcdef";
  std::string token = "cove-placeholder-";
  for (unsigned char b : raw) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  return token;
}

}  // namespace

const Secret* SecretSet::Find(std::string_view name) const {
  for (const auto& s : secrets)
    if (s.name == name) return &s;
  return nullptr;
}

bool SecretSet::BindsHost(const std::string& host) const {
  for (const auto& s : secrets) {
    if (s.placeholder.empty()) continue;
    for (const auto& h : s.hosts)
      if (h.Matches(host, IpAddress::Parse(host))) return true;
  }
  return false;
}

bool SecretSet::HasPlaceholders() const {
  for (const auto& s : secrets)
    if (!s.placeholder.empty()) return true;
  return false;
}

bool SecretStore::ValidName(std::string_view name) { return ValidSecretName(name); }

Result<std::shared_ptr<SecretStore>> SecretStore::Open(std::string path) {
  std::shared_ptr<SecretStore> store(new SecretStore(std::move(path)));
  if (::access(store->path_.c_str(), F_OK) != 0) return store;
  ::chmod(store->path_.c_str(), 0600);
  COVE_ASSIGN_OR_RETURN(std::string text, sys::ReadFile(store->path_, 16 << 20));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("secrets") || !j["secrets"].is_array())
    return MakeError(ErrorCode::kInvalidArgument, store->path_ + " is not a secrets file");
  auto set = std::make_shared<SecretSet>();
  for (const auto& e : j["secrets"]) {
    if (!e.is_object() || !e.value("name", Json()).is_string() || !e.value("value", Json()).is_string())
      return MakeError(ErrorCode::kInvalidArgument, store->path_ + ": malformed entry");
    Secret s;
    s.name = e["name"].get<std::string>();
    s.value = e["value"].get<std::string>();
    if (e.contains("placeholder") && e["placeholder"].is_string()) s.placeholder = e["placeholder"].get<std::string>();
    if (e.contains("hosts") && e["hosts"].is_array()) {
      for (const auto& h : e["hosts"]) {
        if (!h.is_string()) continue;
        auto p = HostPattern::Parse(h.get<std::string>());
        if (p.ok()) s.hosts.push_back(std::move(*p));
      }
    }
    if (ValidName(s.name)) set->secrets.push_back(std::move(s));
  }
  store->set_ = std::move(set);
  return store;
}

Status SecretStore::Save(const SecretSet& set) const {
  Json list = Json::array();
  for (const auto& s : set.secrets) {
    Json hosts = Json::array();
    for (const auto& h : s.hosts) hosts.push_back(h.text);
    Json e = {{"name", s.name}, {"value", s.value}, {"placeholder", s.placeholder}, {"hosts", std::move(hosts)}};
    list.push_back(std::move(e));
  }
  Json doc = {{"secrets", std::move(list)}};
  return sys::WriteFileAtomic(path_, doc.dump() + "\n", 0600);
}

Result<Secret> SecretStore::Put(const std::string& name, std::string value, bool placeholder,
                                std::vector<HostPattern> hosts) {
  if (!ValidName(name)) return MakeError(ErrorCode::kInvalidArgument, "secret names are [A-Z0-9_]{1,64}");
  std::lock_guard lock(mu_);
  auto next = std::make_shared<SecretSet>(*set_);
  Secret s;
  s.name = name;
  s.value = std::move(value);
  s.hosts = std::move(hosts);
  const Secret* old = set_->Find(name);
  if (placeholder) {
    if (old && !old->placeholder.empty()) {
      s.placeholder = old->placeholder;
    } else {
      COVE_ASSIGN_OR_RETURN(s.placeholder, NewPlaceholder());
    }
  }
  bool replaced = false;
  for (auto& e : next->secrets) {
    if (e.name == name) {
      e = s;
      replaced = true;
    }
  }
  if (!replaced) next->secrets.push_back(s);
  COVE_TRY(Save(*next));
  set_ = std::move(next);
  return s;
}

Status SecretStore::Remove(const std::string& name) {
  std::lock_guard lock(mu_);
  if (!set_->Find(name)) return MakeError(ErrorCode::kNotFound, "secret " + name + " not found");
  auto next = std::make_shared<SecretSet>();
  for (const auto& e : set_->secrets)
    if (e.name != name) next->secrets.push_back(e);
  COVE_TRY(Save(*next));
  set_ = std::move(next);
  return OkStatus();
}

std::shared_ptr<const SecretSet> SecretStore::Snapshot() const {
  std::lock_guard lock(mu_);
  return set_;
}

}  // namespace cove::proxy
