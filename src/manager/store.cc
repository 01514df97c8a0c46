#include "manager/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

namespace cove {
namespace {

Error DbError(sqlite3* db, const std::string& what) {
  return MakeError(ErrorCode::kInternal, what + ": " + sqlite3_errmsg(db));
}

// A prepared statement, finalized on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  // The records hold sandboxes' environments: only root may read them. SQLite
  // gives its -wal and -shm files the mode of the database file.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return SysError("create database " + path);
  int rc = ::fchmod(fd, 0600);
  ::close(fd);
  if (rc != 0) return SysError("chmod database " + path);
  for (const char* suffix : {"-wal", "-shm"}) ::chmod((path + suffix).c_str(), 0600);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    Error e = DbError(db, "open database " + path);
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<Store> store(new Store(db));
  COVE_TRY(store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"));
  COVE_TRY(store->Exec(
      "CREATE TABLE IF NOT EXISTS sandboxes (id TEXT PRIMARY KEY, record TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);"));
  return store;
}

Store::~Store() { sqlite3_close(db_); }

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Error e = MakeError(ErrorCode::kInternal, std::string("sql: ") + (err ? err : "?"));
    sqlite3_free(err);
    return e;
  }
  return OkStatus();
}

Status Store::PutSandbox(const SandboxRecord& record) {
  std::lock_guard lock(mu_);
  Stmt st;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO sandboxes (id, record) VALUES (?, ?)", -1, &st.s,
                         nullptr) != SQLITE_OK)
    return DbError(db_, "prepare");
  std::string json = record.ToJson().dump();
  sqlite3_bind_text(st.s, 1, record.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, json.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE) return DbError(db_, "store sandbox " + record.id);
  return OkStatus();
}

Status Store::RemoveSandbox(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt st;
  if (sqlite3_prepare_v2(db_, "DELETE FROM sandboxes WHERE id = ?", -1, &st.s, nullptr) != SQLITE_OK)
    return DbError(db_, "prepare");
  sqlite3_bind_text(st.s, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE) return DbError(db_, "remove sandbox " + id);
  return OkStatus();
}

Result<std::vector<SandboxRecord>> Store::LoadSandboxes() {
  std::lock_guard lock(mu_);
  Stmt st;
  if (sqlite3_prepare_v2(db_, "SELECT id, record FROM sandboxes ORDER BY id", -1, &st.s, nullptr) !=
      SQLITE_OK)
    return DbError(db_, "prepare");
  std::vector<SandboxRecord> out;
  int rc;
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    std::string id = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
    auto j = nlohmann::json::parse(reinterpret_cast<const char*>(sqlite3_column_text(st.s, 1)), nullptr,
                                   false);
    auto r = SandboxRecord::FromJson(j);
    if (!r.ok()) {
      log::Error("skipping unreadable record of sandbox {}: {}", id, r.error().message);
      continue;
    }
    out.push_back(std::move(*r));
  }
  if (rc != SQLITE_DONE) return DbError(db_, "load sandboxes");
  return out;
}

Status Store::PutSetting(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  Stmt st;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", -1, &st.s,
                         nullptr) != SQLITE_OK)
    return DbError(db_, "prepare");
  sqlite3_bind_text(st.s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, value.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE) return DbError(db_, "store setting " + key);
  return OkStatus();
}

Result<std::string> Store::GetSetting(const std::string& key) {
  std::lock_guard lock(mu_);
  Stmt st;
  if (sqlite3_prepare_v2(db_, "SELECT value FROM settings WHERE key = ?", -1, &st.s, nullptr) != SQLITE_OK)
    return DbError(db_, "prepare");
  sqlite3_bind_text(st.s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st.s);
  if (rc == SQLITE_ROW) return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0)));
  if (rc == SQLITE_DONE) return MakeError(ErrorCode::kNotFound, "no setting " + key);
  return DbError(db_, "read setting " + key);
}

}  // namespace cove
