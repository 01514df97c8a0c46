// The cove CLI commands, over HttpClient, and the pure helpers they use.
//
// Each command prints its result on stdout (a table, a value, or with --json
// the server's JSON) and returns the process exit code; failures are returned
// as Error and printed once by main.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base64.h"
#include "base/error.h"
#include "base/shell_quote.h"
#include "cli/http_client.h"

namespace cove::cli {

// ---- pure helpers (unit-tested)

// Joins argv into one command line; each element stays one word.
std::string ShellJoin(const std::vector<std::string>& argv);

// "ID:PATH" (scp style: a colon before any slash). A local path gives
// nullopt; "ID:" and ":PATH" are errors.
struct RemotePath {
  std::string id;
  std::string path;
};
Result<std::optional<RemotePath>> ParseRemotePath(std::string_view arg);

// "K=V" -> {K, V}; an empty key or a missing '=' is an error.
Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view kv);

// Last path component ("/a/b/" -> "b"; "/" -> "").
std::string BaseName(std::string_view path);

// The one-line message main prints for an error: "sandbox \"x\" not found
// (SANDBOX_NOT_FOUND)".
std::string DescribeError(const Error& e);

// ---- commands

struct GlobalOptions {
  std::string url;        // base URL of coved
  std::string token;      // bearer token ("" sends none)
  bool json = false;      // print raw JSON
};

struct CreateOptions {
  std::string id;
  std::string type;
  std::string image;
  std::vector<std::string> env;     // K=V
  std::vector<std::string> labels;  // K=V
};

struct ExecOptions {
  std::string id;
  std::string session;
  std::string cwd;
  std::vector<std::string> env;  // K=V
  long long timeout_ms = 0;      // 0: none
  std::vector<std::string> argv;
};

struct PortExposeOptions {
  std::string id;
  long long port = 0;
  std::string name;
  std::string token;  // "": a random one
};

struct RunOptions {
  std::string id;
  std::string language = "python";  // python, javascript, typescript
  bool language_set = false;         // --lang given
  std::string context;               // an existing context ("": create one)
  long long timeout_ms = 0;          // 0: none
  std::string file;                  // "" (stdin or the REPL) or "-" (stdin)
};

class Commands {
 public:
  static Result<std::unique_ptr<Commands>> Create(GlobalOptions opts);

  Result<int> CreateSandbox(const CreateOptions& o);
  Result<int> List();
  Result<int> Info(const std::string& id);
  Result<int> Remove(const std::vector<std::string>& ids);
  // Returns the command's exit code; cove's own failures are errors.
  Result<int> Exec(const ExecOptions& o);
  Result<int> Copy(const std::string& src, const std::string& dst);
  Result<int> ImageImport(const std::string& name, const std::string& source);
  Result<int> ImageList();
  // An interactive terminal on the sandbox (shell_session.h); returns the
  // shell's exit status.
  Result<int> Shell(const std::string& id, const std::string& session);
  // Preview URLs: `cove port expose` prints the URL; ls lists; rm removes.
  Result<int> PortExpose(const PortExposeOptions& o);
  Result<int> PortList(const std::string& id);
  Result<int> PortRemove(const std::string& id, long long port);
  // `cove run` (run.cc): code in an interpreter context, from a file, stdin
  // or a REPL. Returns 0, 1 (the code raised) or 124 (timed out).
  Result<int> Run(const RunOptions& o);

 private:
  Commands(GlobalOptions opts, std::unique_ptr<HttpClient> http)
      : opts_(std::move(opts)), http_(std::move(http)) {}

  // GET /v1/sandboxes/ID, so that commands on the compatible API do not
  // create a sandbox by accident when the id has a typo.
  Status RequireSandbox(const std::string& id);
  Result<int> Upload(const std::string& local, const RemotePath& remote);
  Result<int> Download(const RemotePath& remote, const std::string& local);
  static std::string SandboxPath(const std::string& id, std::string_view rest = "");

  GlobalOptions opts_;
  std::unique_ptr<HttpClient> http_;
};

}  // namespace cove::cli
