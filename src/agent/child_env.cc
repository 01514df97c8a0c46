#include "agent/child_env.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "agent/util.h"
#include "agent/reply.h"
#include "sys/io.h"

namespace cove::agent {
namespace {

const std::vector<std::pair<std::string, std::string>> kDefaultEnv = {
    {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    {"HOME", "/root"},
    {"TERM", "xterm-256color"},
    {"LANG", "C.UTF-8"},
};

std::string ReadSmallFile(const char* path) {
  auto r = sys::ReadFile(path, 4 << 20);
  return r.ok() ? *r : std::string();
}

}  // namespace

bool ParseIdentity(const std::string& user, Identity* out, json* err) {
  if (user.empty() || user == "root") return true;
  std::string passwd = ReadSmallFile("/etc/passwd");
  auto e = FindPasswd(passwd, user);
  if (!e) {
    if (user != "user") {
      *err = ValidationError("unknown user '" + user + "'", "user");
      return false;
    }
    e = PasswdEntry{"user", 1000, 1000, "/home/user", "/bin/bash"};
  }
  out->set = e->uid != 0 || e->gid != 0;
  out->uid = e->uid;
  out->gid = e->gid;
  out->name = e->name;
  out->home = e->home.empty() ? "/" : e->home;
  out->groups = FindGroups(ReadSmallFile("/etc/group"), user);
  if (std::find(out->groups.begin(), out->groups.end(), out->gid) == out->groups.end())
    out->groups.push_back(out->gid);
  return true;
}

std::vector<std::string> BuildEnv(const std::vector<std::string>& base,
                                  const std::vector<std::pair<std::string, std::string>>& extra,
                                  const Identity* ident) {
  std::vector<std::pair<std::string, std::string>> kv = kDefaultEnv;
  auto set = [&](const std::string& k, const std::string& v) {
    for (auto& p : kv) {
      if (p.first == k) {
        p.second = v;
        return;
      }
    }
    kv.emplace_back(k, v);
  };
  for (const auto& e : base) {
    size_t eq = e.find('=');
    if (eq == std::string::npos) continue;
    set(e.substr(0, eq), e.substr(eq + 1));
  }
  if (ident && !ident->name.empty()) {
    set("HOME", ident->home);
    set("USER", ident->name);
    set("LOGNAME", ident->name);
  }
  for (const auto& [k, v] : extra) set(k, v);
  std::vector<std::string> out;
  out.reserve(kv.size());
  for (auto& [k, v] : kv) out.push_back(k + "=" + v);
  return out;
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

bool MakePipe(UniqueFd* r, UniqueFd* w, bool nonblock_read) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return false;
  r->Reset(p[0]);
  w->Reset(p[1]);
  if (nonblock_read) fcntl(p[0], F_SETFL, O_NONBLOCK);
  return true;
}

}  // namespace cove::agent
