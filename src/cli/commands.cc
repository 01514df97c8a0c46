#include "cli/commands.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/scope_exit.h"
#include "cli/shell_session.h"
#include "cli/sse_json.h"
#include "sys/io.h"
#include "sys/unique_fd.h"

namespace cove::cli {

using nlohmann::json;

// ---------------------------------------------------------------- helpers

std::string ShellJoin(const std::vector<std::string>& argv) {
  std::string out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i) out += ' ';
    out += ShellQuote(argv[i]);
  }
  return out;
}

Result<std::optional<RemotePath>> ParseRemotePath(std::string_view arg) {
  size_t colon = arg.find(':');
  size_t slash = arg.find('/');
  if (colon == std::string_view::npos || (slash != std::string_view::npos && slash < colon)) {
    return std::optional<RemotePath>();
  }
  RemotePath r{std::string(arg.substr(0, colon)), std::string(arg.substr(colon + 1))};
  if (r.id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + std::string(arg) + "\": missing sandbox id before ':' (use ./" +
                         std::string(arg) + " for a local file)");
  }
  if (r.path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + std::string(arg) + "\": missing path after ':'");
  }
  return std::optional<RemotePath>(std::move(r));
}

Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view kv) {
  size_t eq = kv.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + std::string(kv) + "\": expected KEY=VALUE");
  }
  return std::make_pair(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
}

std::string BaseName(std::string_view path) {
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string DescribeError(const Error& e) {
  std::string msg = e.ToString();
  // "Sandbox not found" -> "sandbox not found", but keep "HTTP 502" and acronyms.
  if (msg.size() > 1 && std::isupper(static_cast<unsigned char>(msg[0])) &&
      std::islower(static_cast<unsigned char>(msg[1]))) {
    msg[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[0])));
  }
  std::string code = ApiCode(e);
  if (!code.empty()) msg += " (" + code + ")";
  return msg;
}

namespace {

// Uploads go as one base64 JSON body; coved bounds request bodies anyway.
constexpr size_t kMaxUpload = 1u << 30;

Result<json> ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return MakeError(ErrorCode::kInternal, "coved sent invalid JSON: " + text.substr(0, 200));
  }
  return j;
}

Result<json> KeyValues(const std::vector<std::string>& items) {
  json obj = json::object();
  for (const auto& kv : items) {
    COVE_ASSIGN_OR_RETURN(auto p, ParseKeyValue(kv));
    obj[p.first] = p.second;
  }
  return obj;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 3, ' ');
    }
    std::puts(line.c_str());
  }
}

std::string HumanBytes(const json& v) {
  if (!v.is_number()) return v.is_null() ? "-" : v.dump();
  double n = v.get<double>();
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g %s", n, units[u]);
  return buf;
}

void PrintJson(const std::string& body) {
  std::fwrite(body.data(), 1, body.size(), stdout);
  if (body.empty() || body.back() != '\n') std::fputc('\n', stdout);
}

// Writes a tar archive of the directory tree at dir (not following symlinks,
// not crossing mount points) to fd. Paths in the archive are relative to dir.
Status TarDirectory(const std::string& dir, int fd) {
  struct archive* disk = archive_read_disk_new();
  struct archive* out = archive_write_new();
  struct archive_entry_linkresolver* links = archive_entry_linkresolver_new();
  ScopeExit cleanup([&] {
    archive_entry_linkresolver_free(links);
    archive_write_free(out);
    archive_read_free(disk);
  });
  auto fail = [](struct archive* a, const std::string& what) {
    const char* msg = archive_error_string(a);
    return MakeError(ErrorCode::kInternal, what + ": " + (msg ? msg : "unknown error"));
  };
  archive_read_disk_set_symlink_physical(disk);
  archive_read_disk_set_standard_lookup(disk);
  archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
  archive_write_set_format_pax_restricted(out);
  archive_entry_linkresolver_set_strategy(links, archive_format(out));
  if (archive_write_open_fd(out, fd) != ARCHIVE_OK) return fail(out, "tar");
  if (archive_read_disk_open(disk, dir.c_str()) != ARCHIVE_OK) return fail(disk, dir);
  const std::string prefix = dir == "/" ? "/" : dir + "/";
  std::string buf(1 << 16, '\0');
  for (;;) {
    struct archive_entry* entry = archive_entry_new();
    ScopeExit free_entry([&] { archive_entry_free(entry); });
    int r = archive_read_next_header2(disk, entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return fail(disk, dir);
    archive_read_disk_descend(disk);
    std::string source = archive_entry_pathname(entry);
    if (source == dir) continue;  // the root itself
    if (source.rfind(prefix, 0) != 0) {
      return MakeError(ErrorCode::kInternal, "unexpected path in tree: " + source);
    }
    archive_entry_copy_pathname(entry, source.substr(prefix.size()).c_str());
    struct archive_entry* spare = nullptr;
    archive_entry_linkify(links, &entry, &spare);  // tar formats never defer
    if (entry == nullptr) continue;
    if (archive_write_header(out, entry) < ARCHIVE_WARN) return fail(out, source);
    if (archive_entry_filetype(entry) == AE_IFREG && archive_entry_size(entry) > 0) {
      UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (!in) return SysError("open " + source);
      int64_t left = archive_entry_size(entry);
      while (left > 0) {
        ssize_t n = ::read(in.get(), buf.data(), std::min<int64_t>(left, buf.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SysError("read " + source);
        if (n == 0) {
          return MakeError(ErrorCode::kInternal, source + ": file shrank while archiving");
        }
        if (archive_write_data(out, buf.data(), static_cast<size_t>(n)) < 0) {
          return fail(out, source);
        }
        left -= n;
      }
    }
    if (spare) archive_entry_free(spare);
  }
  if (archive_write_close(out) != ARCHIVE_OK) return fail(out, "tar");
  return OkStatus();
}

}  // namespace

// ---------------------------------------------------------------- Commands

Result<std::unique_ptr<Commands>> Commands::Create(GlobalOptions opts) {
  COVE_ASSIGN_OR_RETURN(auto http, HttpClient::Create(opts.url, opts.token));
  return std::unique_ptr<Commands>(new Commands(std::move(opts), std::move(http)));
}

std::string Commands::SandboxPath(const std::string& id, std::string_view rest) {
  return "/v1/sandboxes/" + EscapeSegment(id) + std::string(rest);
}

Status Commands::RequireSandbox(const std::string& id) {
  auto r = http_->Json("GET", SandboxPath(id), nullptr);
  if (!r.ok()) {
    Error e = std::move(r).error();
    if (ApiCode(e) == "SANDBOX_NOT_FOUND") e.message = "sandbox \"" + id + "\" not found";
    return e;
  }
  return OkStatus();
}

Result<int> Commands::CreateSandbox(const CreateOptions& o) {
  json req = json::object();
  if (!o.id.empty()) req["id"] = o.id;
  if (!o.type.empty()) req["instanceType"] = o.type;
  if (!o.image.empty()) req["image"] = o.image;
  if (!o.env.empty()) {
    COVE_ASSIGN_OR_RETURN(req["env"], KeyValues(o.env));
  }
  if (!o.labels.empty()) {
    COVE_ASSIGN_OR_RETURN(req["labels"], KeyValues(o.labels));
  }
  std::string body = req.dump();
  Result<std::string> r = std::string();
  {
    Progress progress("creating sandbox");
    r = http_->Json("POST", "/v1/sandboxes", &body, &progress);
  }
  if (!r.ok()) {
    Error e = std::move(r).error();
    if (ApiCode(e) == "SANDBOX_ALREADY_EXISTS" && !o.id.empty()) {
      e.message = "sandbox \"" + o.id + "\" already exists";
    }
    return e;
  }
  if (opts_.json) {
    PrintJson(*r);
    return 0;
  }
  COVE_ASSIGN_OR_RETURN(json j, ParseJson(*r));
  std::puts(Str(j, "id").c_str());
  return 0;
}

Result<int> Commands::List() {
  COVE_ASSIGN_OR_RETURN(std::string body, http_->Json("GET", "/v1/sandboxes", nullptr));
  if (opts_.json) {
    PrintJson(body);
    return 0;
  }
  COVE_ASSIGN_OR_RETURN(json j, ParseJson(body));
  std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "IMAGE", "TYPE", "CREATED"}};
  if (auto it = j.find("sandboxes"); it != j.end() && it->is_array()) {
    for (const auto& s : *it) {
      if (!s.is_object()) continue;
      rows.push_back({Str(s, "id"), Str(s, "state"), Str(s, "image"), Str(s, "instanceType"),
                      Str(s, "createdAt")});
    }
  }
  PrintTable(rows);
  return 0;
}

Result<int> Commands::Info(const std::string& id) {
  auto r = http_->Json("GET", SandboxPath(id), nullptr);
  if (!r.ok()) {
    Error e = std::move(r).error();
    if (ApiCode(e) == "SANDBOX_NOT_FOUND") e.message = "sandbox \"" + id + "\" not found";
    return e;
  }
  if (opts_.json) {
    PrintJson(*r);
    return 0;
  }
  COVE_ASSIGN_OR_RETURN(json j, ParseJson(*r));
  std::vector<std::vector<std::string>> rows;
  for (const char* key : {"id", "state", "image", "instanceType", "createdAt", "pid"}) {
    rows.push_back({std::string(key) + ":", Str(j, key)});
  }
  if (auto it = j.find("limits"); it != j.end() && it->is_object()) {
    const json& l = *it;
    std::string cpu = l.contains("cpuMillis") && l["cpuMillis"].is_number()
                          ? std::to_string(l["cpuMillis"].get<double>() / 1000.0)
                          : "-";
    if (cpu != "-") {
      cpu.erase(cpu.find_last_not_of('0') + 1);
      if (cpu.back() == '.') cpu.pop_back();
      cpu += " vCPU";
    }
    rows.push_back({"cpu:", cpu});
    rows.push_back({"memory:", HumanBytes(l.value("memoryBytes", json()))});
    rows.push_back({"pids:", l.contains("pids") ? l["pids"].dump() : "-"});
    rows.push_back({"disk:", HumanBytes(l.value("diskBytes", json()))});
  }
  if (auto it = j.find("labels"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      rows.push_back({"label:", k + "=" + (v.is_string() ? v.get<std::string>() : v.dump())});
    }
  }
  if (auto it = j.find("failure"); it != j.end() && !it->is_null()) {
    rows.push_back({"failure:", it->is_string() ? it->get<std::string>() : it->dump()});
  }
  PrintTable(rows);
  return 0;
}

Result<int> Commands::Remove(const std::vector<std::string>& ids) {
  for (const auto& id : ids) {
    COVE_ASSIGN_OR_RETURN(std::string body, http_->Json("DELETE", SandboxPath(id), nullptr));
    if (opts_.json) {
      PrintJson(body);
    } else {
      std::puts(id.c_str());
    }
  }
  return 0;
}

Result<int> Commands::Exec(const ExecOptions& o) {
  if (o.argv.empty()) return MakeError(ErrorCode::kInvalidArgument, "no command given");
  COVE_TRY(RequireSandbox(o.id));
  json req = {{"command", ShellJoin(o.argv)}};
  if (!o.session.empty()) req["sessionId"] = o.session;
  if (!o.cwd.empty()) req["cwd"] = o.cwd;
  if (!o.env.empty()) {
    COVE_ASSIGN_OR_RETURN(req["env"], KeyValues(o.env));
  }
  if (o.timeout_ms > 0) req["timeoutMs"] = o.timeout_ms;

  auto clamp = [](const json& code) -> int {
    if (!code.is_number_integer()) return 255;
    long long c = code.get<long long>();
    return c < 0 || c > 255 ? 255 : static_cast<int>(c);
  };

  if (opts_.json) {  // one JSON result instead of a live stream
    std::string body = req.dump();
    COVE_ASSIGN_OR_RETURN(std::string out,
                          http_->Json("POST", SandboxPath(o.id, "/api/execute"), &body));
    PrintJson(out);
    COVE_ASSIGN_OR_RETURN(json j, ParseJson(out));
    return clamp(j.value("exitCode", json()));
  }

  std::optional<int> exit_code;
  std::optional<Error> failure;
  bool output_closed = false;
  auto on_event = [&](const SseEvent& ev) -> bool {
    json j = json::parse(ev.data, nullptr, false);
    std::string type = j.is_object() ? Str(j, "type") : "";
    if (type.empty()) type = ev.event;
    if (type == "stdout" || type == "stderr") {
      std::string data = j.is_object() ? Str(j, "data") : ev.data;
      FILE* f = type == "stdout" ? stdout : stderr;
      if (!output_closed &&
          (std::fwrite(data.data(), 1, data.size(), f) != data.size() || std::fflush(f) != 0)) {
        output_closed = true;  // e.g. `cove exec ... | head`: keep draining
      }
    } else if (type == "complete") {
      exit_code = clamp(j.is_object() ? j.value("exitCode", json()) : json());
      return false;
    } else if (type == "error") {
      std::string msg = j.is_object() ? Str(j, "data") : ev.data;
      if (msg.empty() && j.is_object()) msg = Str(j, "error");
      if (msg.empty() && j.is_object()) msg = Str(j, "message");
      failure = MakeError(ErrorCode::kInternal, "command failed: " + msg);
      if (j.is_object() && !Str(j, "code").empty()) failure->context["code"] = Str(j, "code");
      return false;
    }
    return true;
  };
  COVE_TRY(http_->Stream(SandboxPath(o.id, "/api/execute/stream"), req.dump(), on_event));
  if (failure) return *failure;
  if (!exit_code) {
    return MakeError(ErrorCode::kUnavailable, "output stream ended before the command completed");
  }
  return *exit_code;
}

Result<int> Commands::Copy(const std::string& src, const std::string& dst) {
  COVE_ASSIGN_OR_RETURN(auto rs, ParseRemotePath(src));
  COVE_ASSIGN_OR_RETURN(auto rd, ParseRemotePath(dst));
  if (rs && rd) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "copying between two sandboxes is not supported; copy through a local file");
  }
  if (!rs && !rd) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "one of the two paths must be in a sandbox (ID:PATH)");
  }
  if (rd) return Upload(src, *rd);
  return Download(*rs, dst);
}

Result<int> Commands::Upload(const std::string& local, const RemotePath& remote) {
  std::string data;
  if (local == "-") {
    COVE_ASSIGN_OR_RETURN(data, sys::ReadAll(STDIN_FILENO, kMaxUpload));
  } else {
    UniqueFd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return SysError("open " + local);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return SysError("stat " + local);
    if (S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       local + " is a directory; only single files can be copied");
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxUpload) {
      return MakeError(ErrorCode::kResourceExhausted, local + " is too large to copy");
    }
    COVE_ASSIGN_OR_RETURN(data, sys::ReadAll(fd.get(), kMaxUpload));
  }
  COVE_TRY(RequireSandbox(remote.id));
  std::string path = remote.path;
  std::string name = local == "-" ? "" : BaseName(local);
  if (path.back() == '/' && !name.empty()) path += name;
  const size_t size = data.size();
  auto send = [&](const std::string& to) {
    json req = {{"path", to}, {"content", Base64Encode(data)}, {"encoding", "base64"}};
    std::string body = req.dump();
    Progress progress("uploading " + (name.empty() ? std::string("stdin") : name));
    return http_->Json("POST", SandboxPath(remote.id, "/api/write"), &body, &progress);
  };
  auto r = send(path);
  if (!r.ok() && ApiCode(r.error()) == "IS_DIRECTORY" && !name.empty()) {
    path += "/" + name;  // `cove cp f ID:/dir` means ID:/dir/f, as with cp(1)
    r = send(path);
  }
  if (!r.ok()) return std::move(r).error();
  if (opts_.json) {
    std::puts(json({{"id", remote.id}, {"path", path}, {"bytes", size}}).dump().c_str());
  }
  return 0;
}

Result<int> Commands::Download(const RemotePath& remote, const std::string& local) {
  const bool to_stdout = local == "-";
  std::string target = local;
  struct stat st;
  if (!to_stdout && ::stat(local.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::string name = BaseName(remote.path);
    if (name.empty() || name == "." || name == "..") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "cannot name a local file after \"" + remote.path + "\"");
    }
    target = local + (local.back() == '/' ? "" : "/") + name;
  }
  COVE_TRY(RequireSandbox(remote.id));

  // Write into a temporary file next to the target, renamed at the end: an
  // interrupted copy never leaves a partial file under the target's name.
  UniqueFd out;
  std::string temp;
  if (to_stdout) {
    out.Reset(::dup(STDOUT_FILENO));
  } else {
    std::string dir = target.find('/') == std::string::npos
                          ? "."
                          : target.substr(0, std::max<size_t>(target.rfind('/'), 1));
    temp = dir + "/.cove-cp-XXXXXX";
    out.Reset(::mkostemp(temp.data(), O_CLOEXEC));
    if (!out) return SysError("create a temporary file in " + dir);
  }
  ScopeExit remove_temp([&] {
    if (!temp.empty()) ::unlink(temp.c_str());
  });

  bool binary = false;
  bool complete = false;
  uint64_t written = 0;
  std::optional<Error> failure;
  Base64Decoder decoder;
  std::string decoded;
  auto on_event = [&](const SseEvent& ev) -> bool {
    auto parsed = ParseJsonEvent(ev);
    if (!parsed.ok()) {
      failure = std::move(parsed).error();
      return false;
    }
    const json& j = parsed->body;
    const std::string& type = parsed->type;
    if (type == "metadata") {
      binary = j.value("isBinary", false) || Str(j, "encoding") == "base64";
    } else if (type == "chunk") {
      std::string data = Str(j, "data");
      Status s;
      if (binary) {
        decoded.clear();
        s = decoder.Feed(data, &decoded);
        if (s.ok()) s = sys::WriteAll(out.get(), decoded);
        written += decoded.size();
      } else {
        s = sys::WriteAll(out.get(), data);
        written += data.size();
      }
      if (!s.ok()) {
        failure = std::move(s).error();
        return false;
      }
    } else if (type == "complete") {
      complete = true;
      return false;
    } else if (type == "error") {
      std::string msg = Str(j, "error");
      if (msg.empty()) msg = Str(j, "message");
      failure = MakeError(ErrorCode::kInternal, "reading " + remote.path + " failed: " + msg);
      if (std::string code = Str(j, "code"); !code.empty()) failure->context["code"] = code;
      return false;
    }
    return true;
  };
  {
    Progress progress("downloading " + BaseName(remote.path));
    json req = {{"path", remote.path}};
    COVE_TRY(http_->Stream(SandboxPath(remote.id, "/api/read/stream"), req.dump(), on_event,
                           &progress));
  }
  if (failure) return *failure;
  if (!complete) {
    return MakeError(ErrorCode::kUnavailable, "file stream ended before it was complete");
  }
  if (binary) {
    decoded.clear();
    COVE_TRY(decoder.Finish(&decoded));
    COVE_TRY(sys::WriteAll(out.get(), decoded));
    written += decoded.size();
  }
  if (!to_stdout) {
    mode_t mask = ::umask(0);
    ::umask(mask);
    if (::fchmod(out.get(), 0666 & ~mask) != 0) return SysError("chmod " + temp);
    if (::fsync(out.get()) != 0) return SysError("fsync " + temp);
    if (::rename(temp.c_str(), target.c_str()) != 0) return SysError("rename to " + target);
    temp.clear();
  }
  if (opts_.json) {
    std::string json_out =
        json({{"id", remote.id}, {"path", remote.path}, {"local", target}, {"bytes", written}})
            .dump();
    std::fprintf(to_stdout ? stderr : stdout, "%s\n", json_out.c_str());
  }
  return 0;
}

Result<int> Commands::ImageImport(const std::string& name, const std::string& source) {
  struct stat st;
  if (::stat(source.c_str(), &st) != 0) return SysError("stat " + source);
  UniqueFd fd;
  if (S_ISDIR(st.st_mode)) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string temp = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/cove-image-XXXXXX";
    fd.Reset(::mkostemp(temp.data(), O_CLOEXEC));
    if (!fd) return SysError("create a temporary file for the archive");
    ::unlink(temp.c_str());  // lives until fd closes
    std::string dir = source;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    {
      Progress progress("archiving " + dir);
      COVE_TRY(TarDirectory(dir, fd.get()));
    }
    if (::fstat(fd.get(), &st) != 0) return SysError("stat archive");
    if (::lseek(fd.get(), 0, SEEK_SET) != 0) return SysError("seek archive");
  } else if (S_ISREG(st.st_mode)) {
    fd.Reset(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return SysError("open " + source);
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     source + " is neither a tar archive nor a directory");
  }
  Body body;
  body.fd = fd.get();
  body.size = static_cast<uint64_t>(st.st_size);
  body.content_type = "application/x-tar";
  Result<Response> r = Response();
  {
    Progress progress("importing image " + name);
    r = http_->Request("POST", "/v1/images/" + EscapeSegment(name), &body, &progress);
  }
  if (!r.ok()) return std::move(r).error();
  if (opts_.json) {
    PrintJson(r->body);
  } else {
    COVE_ASSIGN_OR_RETURN(json j, ParseJson(r->body));
    std::puts(Str(j, "name").c_str());
  }
  return 0;
}

Result<int> Commands::ImageList() {
  COVE_ASSIGN_OR_RETURN(std::string body, http_->Json("GET", "/v1/images", nullptr));
  if (opts_.json) {
    PrintJson(body);
    return 0;
  }
  COVE_ASSIGN_OR_RETURN(json j, ParseJson(body));
  std::vector<std::vector<std::string>> rows = {{"NAME", "CREATED"}};
  if (auto it = j.find("images"); it != j.end() && it->is_array()) {
    for (const auto& img : *it) {
      if (img.is_object()) rows.push_back({Str(img, "name"), Str(img, "createdAt")});
    }
  }
  PrintTable(rows);
  return 0;
}

Result<int> Commands::Shell(const std::string& id, const std::string& session) {
  if (session.empty()) return MakeError(ErrorCode::kInvalidArgument, "--session must not be empty");
  // The terminal route creates unknown sandboxes (it is on the compatible
  // API); a typo must not.
  COVE_TRY(RequireSandbox(id));
  try {
    return RunShell({opts_.url, opts_.token, id, session});
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, std::string("terminal failed: ") + e.what());
  }
}

// ---------------------------------------------------------------- ports

namespace {

Error SandboxNotFound(Error e, const std::string& id) {
  if (ApiCode(e) == "SANDBOX_NOT_FOUND") e.message = "sandbox \"" + id + "\" not found";
  return e;
}

}  // namespace

Result<int> Commands::PortExpose(const PortExposeOptions& o) {
  json req = {{"port", o.port}};
  if (!o.name.empty()) req["name"] = o.name;
  if (!o.token.empty()) req["token"] = o.token;
  std::string body = req.dump();
  auto r = http_->Json("POST", SandboxPath(o.id, "/ports"), &body);
  if (!r.ok()) return SandboxNotFound(std::move(r).error(), o.id);
  if (opts_.json) {
    PrintJson(*r);
    return 0;
  }
  COVE_ASSIGN_OR_RETURN(json j, ParseJson(*r));
  std::puts(Str(j, "url").c_str());
  return 0;
}

Result<int> Commands::PortList(const std::string& id) {
  auto r = http_->Json("GET", SandboxPath(id, "/ports"), nullptr);
  if (!r.ok()) return SandboxNotFound(std::move(r).error(), id);
  if (opts_.json) {
    PrintJson(*r);
    return 0;
  }
  COVE_ASSIGN_OR_RETURN(json j, ParseJson(*r));
  std::vector<std::vector<std::string>> rows = {{"PORT", "NAME", "URL"}};
  if (auto it = j.find("ports"); it != j.end() && it->is_array()) {
    for (const auto& p : *it) {
      if (p.is_object()) rows.push_back({Str(p, "port"), Str(p, "name").empty() ? "-" : Str(p, "name"), Str(p, "url")});
    }
  }
  PrintTable(rows);
  return 0;
}

Result<int> Commands::PortRemove(const std::string& id, long long port) {
  auto r = http_->Json("DELETE", SandboxPath(id, "/ports/" + std::to_string(port)), nullptr);
  if (!r.ok()) return SandboxNotFound(std::move(r).error(), id);
  if (opts_.json) PrintJson(*r);
  return 0;
}

}  // namespace cove::cli
