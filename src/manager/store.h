// Store: coved's durable state in an embedded SQLite database (WAL mode).
// Sandbox records, settings, and later ports, secrets and backups.
// Thread-safe: one connection guarded by a mutex (writes are small and rare).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"
#include "manager/sandbox_record.h"

struct sqlite3;

namespace cove {

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();

  Status PutSandbox(const SandboxRecord& record);
  Status RemoveSandbox(const std::string& id);
  Result<std::vector<SandboxRecord>> LoadSandboxes();

  Status PutSetting(const std::string& key, const std::string& value);
  Result<std::string> GetSetting(const std::string& key);  // kNotFound if absent

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);

  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace cove
