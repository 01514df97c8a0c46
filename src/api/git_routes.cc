// /api/git/checkout (reference route #27): a `git clone` run in the sandbox
// as an ordinary command of the caller's session, with git's failures mapped
// to the reference's GIT_* codes (git's stderr and exit code in the context).
#include <fmt/format.h>

#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/collector.h"
#include "api/fields.h"
#include "api/route_table.h"
#include "base/shell_quote.h"

namespace cove::api {
namespace {

constexpr int64_t kDefaultCloneTimeoutMs = 600000;  // Cloudflare's cloneTimeoutMs default

// Empty when url is a URL git should be given; else what is wrong.
std::string CheckRepoUrl(const std::string& url) {
  if (url.empty() || url.size() > 4096) return "repoUrl must be 1-4096 characters";
  if (url[0] == '-') return "repoUrl must not start with '-'";
  for (char c : url)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "repoUrl must not contain control characters";
  for (const char* scheme : {"https://", "http://", "git://", "ssh://", "file://"})
    if (url.rfind(scheme, 0) == 0) return url.size() > std::string(scheme).size() ? "" : "repoUrl has no host or path";
  // scp-like syntax: user@host:path
  size_t at = url.find('@'), colon = url.find(':');
  if (at != std::string::npos && colon != std::string::npos && at < colon && colon + 1 < url.size()) return "";
  return "repoUrl must be an https://, http://, git://, ssh:// or file:// URL, or user@host:path";
}

// "https://host/org/repo.git" -> "repo".
std::string RepoName(const std::string& url) {
  std::string s = url;
  while (!s.empty() && s.back() == '/') s.pop_back();
  size_t cut = s.find_last_of("/:");
  std::string name = cut == std::string::npos ? s : s.substr(cut + 1);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".git") == 0) name.resize(name.size() - 4);
  return name.empty() || name == "." || name == ".." ? "repo" : name;
}

// Maps git's stderr to the reference's codes.
std::string GitErrorCode(const std::string& err) {
  auto has = [&](const char* s) { return err.find(s) != std::string::npos; };
  if (has("Remote branch") && has("not found")) return "GIT_BRANCH_NOT_FOUND";
  if (has("Authentication failed") || has("could not read Username") || has("Permission denied (publickey)"))
    return "GIT_AUTH_FAILED";
  if (has("does not appear to be a git repository") || has("Repository not found") ||
      (has("repository") && has("not found")) || has("does not exist"))
    return "GIT_REPOSITORY_NOT_FOUND";
  if (has("Could not resolve host") || has("unable to access") || has("Connection refused") ||
      has("Network is unreachable") || has("timed out"))
    return "GIT_NETWORK_ERROR";
  return "GIT_OPERATION_FAILED";
}

// A clone to run: the exec op and what the answer names.
struct GitClone {
  agent::ExecOp op;
  std::string url, branch, target;
  int64_t timeout = 0;
};

GitClone BuildClone(RouteInput& in) {
  Fields& f = in.f;
  GitClone g;
  g.url = f.Str("repoUrl", true);
  g.branch = f.Str("branch");
  g.target = f.Str("targetDir");
  auto depth = f.Int("depth", 1, 1 << 30);
  g.timeout = f.Int("timeoutMs", 1, agent::kMaxTimeoutMs).value_or(kDefaultCloneTimeoutMs);
  g.op.session_id = SessionOf(f);
  if (!f.ok()) return g;
  const std::string& url = g.url;
  const std::string& branch = g.branch;
  if (auto why = CheckRepoUrl(url); !why.empty()) {
    in.Refuse(ErrorResponse("INVALID_GIT_URL", why, {{"repoUrl", url}}));
    return g;
  }
  if (!branch.empty() && (branch[0] == '-' || branch.find_first_of(" \t\n~^:?*[\\") != std::string::npos)) {
    in.Refuse(ErrorResponse("VALIDATION_FAILED", "branch is not a valid git branch name", {{"branch", branch}}));
    return g;
  }
  if (g.target.empty()) g.target = "/workspace/" + RepoName(url);
  if (g.target.find('\0') != std::string::npos) {
    in.Refuse(ErrorResponse("VALIDATION_FAILED", "targetDir contains NUL"));
    return g;
  }
  std::string cmd = "git clone --quiet --filter=blob:none";
  if (!branch.empty()) cmd += " --branch " + ShellQuote(branch);
  if (depth) cmd += fmt::format(" --depth {}", *depth);
  cmd += " -- " + ShellQuote(url) + " " + ShellQuote(g.target) + " && git -C " + ShellQuote(g.target) +
         " rev-parse --abbrev-ref HEAD";
  g.op.command = std::move(cmd);
  g.op.timeout_ms = g.timeout;
  g.op.env = agent::EnvVars{{"GIT_TERMINAL_PROMPT", "0"}};
  return g;
}

Task<HttpResponse> Clone(RouteInput& in, AgentPtr agent, GitClone g) {
  const std::string& url = g.url;
  const std::string& branch = g.branch;
  const std::string& target = g.target;
  CollectOptions o;
  o.timeout = std::chrono::milliseconds(g.timeout) + std::chrono::seconds(10);
  o.max_bytes = SIZE_MAX;        // only output is held, within keep_per_stream
  o.keep_per_stream = 64 << 10;  // enough for git's message and the branch name
  o.cancel_with = &in.req;
  const Json request = agent::ToJson(g.op);
  auto got = co_await Collect(agent, request, o);
  if (!got.ok()) co_return ErrorResponse(got.error());
  if (auto e = AgentError(got->reply)) co_return AgentErrorResponse(*e);
  auto reply = agent::ParseExecReply(got->reply);
  if (!reply.ok()) co_return ErrorResponse(MalformedAnswer(reply.error()));
  std::string& out = got->output[0];
  const std::string& err = got->output[1];
  int64_t code = reply->exit_code;
  if (code != 0) {
    std::string gcode = reply->timed_out ? "GIT_OPERATION_FAILED" : GitErrorCode(err);
    std::string first = err.substr(0, err.find('\n'));
    std::string msg = reply->timed_out ? fmt::format("git clone timed out after {}ms", g.timeout)
                                       : fmt::format("git clone of {} failed: {}", url, first.empty() ? "exit " + std::to_string(code) : first);
    co_return ErrorResponse(gcode, msg, {{"repoUrl", url}, {"branch", branch}, {"targetDir", target},
                                         {"exitCode", code}, {"stderr", err}});
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  std::string checked_out = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  co_return JsonResponse(Success({{"repoUrl", url}, {"branch", branch.empty() ? checked_out : branch},
                                  {"targetDir", target}}));
}

}  // namespace

std::vector<Route> GitRoutes() { return {AgentRoute<GitClone>("POST", "/api/git/checkout", BuildClone, Clone)}; }

}  // namespace cove::api
