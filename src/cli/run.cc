// `cove run` (commands.h, run.h): code in an interpreter context.
//
// Threads: the main thread does the work (create the context, run code,
// read the REPL's input). A watcher thread owns the signals (SIGINT,
// SIGTERM, SIGHUP arrive through a self-pipe) and has its own HttpClient, so
// that it can interrupt running code or delete the context while the main
// thread is blocked in a streaming request.
#include "cli/run.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/scope_exit.h"
#include "cli/commands.h"
#include "cli/sse_json.h"
#include "sys/io.h"
#include "sys/unique_fd.h"

namespace cove::cli {

using nlohmann::json;

// ---------------------------------------------------------------- input scan

namespace {

InputScan ScanPython(std::string_view code) {
  InputScan s;
  enum { kCode, kShort, kTriple } mode = kCode;
  char quote = 0;
  char last_sig = 0;       // last significant character of the current line (code only)
  bool line_start = true;  // no significant character on this line yet
  for (size_t i = 0; i < code.size(); ++i) {
    char c = code[i];
    if (mode == kCode) {
      if (c == '\n') {
        if (last_sig == ':' && s.depth == 0) s.block = true;
        last_sig = 0;
        line_start = true;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r') continue;
      if (c == '#') {  // comment to the end of the line
        while (i + 1 < code.size() && code[i + 1] != '\n') ++i;
        continue;
      }
      if (line_start && c == '@' && s.depth == 0) s.block = true;  // a decorator
      line_start = false;
      last_sig = c;
      if (c == '\'' || c == '"') {
        quote = c;
        if (code.substr(i, 3) == std::string(3, c)) {
          mode = kTriple;
          i += 2;
        } else {
          mode = kShort;
        }
      } else if (c == '(' || c == '[' || c == '{') {
        ++s.depth;
      } else if (c == ')' || c == ']' || c == '}') {
        if (s.depth > 0) --s.depth;
      }
    } else {
      if (c == '\\') {
        ++i;  // escapes the next character (also in raw strings, for quotes)
        continue;
      }
      if (mode == kShort && c == '\n') {  // unterminated: the runner reports it
        mode = kCode;
        last_sig = 0;
        line_start = true;
        continue;
      }
      if (c == quote) {
        if (mode == kShort) {
          mode = kCode;
        } else if (code.substr(i, 3) == std::string(3, c)) {
          mode = kCode;
          i += 2;
        }
      }
    }
  }
  if (mode == kCode && last_sig == ':' && s.depth == 0) s.block = true;
  s.open_string = mode == kTriple;
  return s;
}

InputScan ScanJavaScript(std::string_view code) {
  InputScan s;
  // A stack of frames: code (with its own bracket depth) and template
  // literals; "${" in a template opens a code frame that "}" closes.
  struct Frame {
    bool code;
    int depth;
  };
  std::vector<Frame> stack = {{true, 0}};
  bool block_comment = false;
  for (size_t i = 0; i < code.size(); ++i) {
    char c = code[i];
    char next = i + 1 < code.size() ? code[i + 1] : '\0';
    if (block_comment) {
      if (c == '*' && next == '/') {
        block_comment = false;
        ++i;
      }
      continue;
    }
    Frame& f = stack.back();
    if (!f.code) {  // template literal
      if (c == '\\') {
        ++i;
      } else if (c == '`') {
        stack.pop_back();
      } else if (c == '$' && next == '{') {
        stack.push_back({true, 0});
        ++i;
      }
      continue;
    }
    if (c == '/' && next == '/') {
      while (i + 1 < code.size() && code[i + 1] != '\n') ++i;
    } else if (c == '/' && next == '*') {
      block_comment = true;
      ++i;
    } else if (c == '\'' || c == '"') {
      for (++i; i < code.size() && code[i] != c && code[i] != '\n'; ++i) {
        if (code[i] == '\\') ++i;
      }
    } else if (c == '`') {
      stack.push_back({false, 0});
    } else if (c == '(' || c == '[' || c == '{') {
      ++f.depth;
    } else if (c == ')' || c == ']' || c == '}') {
      if (f.depth > 0) {
        --f.depth;
      } else if (c == '}' && stack.size() > 1) {
        stack.pop_back();  // the end of a "${...}"
      }
    }
  }
  for (const Frame& f : stack) {
    if (f.code) {
      s.depth += f.depth;
    } else {
      s.open_string = true;
    }
  }
  s.open_string = s.open_string || block_comment;
  return s;
}

std::string_view LastLine(std::string_view code) {
  size_t nl = code.rfind('\n');
  return nl == std::string_view::npos ? code : code.substr(nl + 1);
}

bool IsBlank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

InputScan ScanInput(std::string_view code, std::string_view language) {
  InputScan s = language == "python" ? ScanPython(code) : ScanJavaScript(code);
  std::string_view last = LastLine(code);
  s.backslash = !last.empty() && last.back() == '\\';
  return s;
}

bool NeedsMoreInput(std::string_view code, std::string_view language) {
  InputScan s = ScanInput(code, language);
  if (s.depth > 0 || s.open_string || s.backslash) return true;
  if (language == "python" && s.block) return !IsBlank(LastLine(code));
  return false;
}

// ---------------------------------------------------------------- images

namespace {

uint32_t Be32(std::string_view d, size_t at) {
  return (uint32_t(uint8_t(d[at])) << 24) | (uint32_t(uint8_t(d[at + 1])) << 16) |
         (uint32_t(uint8_t(d[at + 2])) << 8) | uint32_t(uint8_t(d[at + 3]));
}

uint32_t Be16(std::string_view d, size_t at) {
  return (uint32_t(uint8_t(d[at])) << 8) | uint32_t(uint8_t(d[at + 1]));
}

}  // namespace

std::optional<std::pair<uint32_t, uint32_t>> PngSize(std::string_view d) {
  static constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  if (d.size() < 24 || d.substr(0, 8) != kSignature || d.substr(12, 4) != "IHDR") {
    return std::nullopt;
  }
  return std::make_pair(Be32(d, 16), Be32(d, 20));
}

std::optional<std::pair<uint32_t, uint32_t>> JpegSize(std::string_view d) {
  if (d.size() < 4 || uint8_t(d[0]) != 0xFF || uint8_t(d[1]) != 0xD8) return std::nullopt;
  size_t i = 2;
  while (i + 4 <= d.size()) {
    if (uint8_t(d[i]) != 0xFF) return std::nullopt;
    uint8_t m = uint8_t(d[i + 1]);
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {  // markers without a length
      i += 2;
      continue;
    }
    if (m == 0xD9 || m == 0xDA) return std::nullopt;  // image data before any frame header
    uint32_t len = Be16(d, i + 2);
    if (len < 2) return std::nullopt;
    bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 9 > d.size()) return std::nullopt;
      return std::make_pair(Be16(d, i + 7), Be16(d, i + 5));
    }
    i += 2 + len;
  }
  return std::nullopt;
}

bool IsPlaceholderText(std::string_view text) {
  return text.size() >= 2 && text.front() == '<' && text.back() == '>' &&
         text.find('\n') == std::string_view::npos;
}

std::string ResultFileName(int n, std::string_view ext) {
  return "cove-result-" + std::to_string(n) + "." + std::string(ext);
}

Result<std::string> SaveResultFile(const std::string& dir, std::string_view ext,
                                   std::string_view data, int* next) {
  for (int n = std::max(*next, 1), tries = 0; tries < 100000; ++n, ++tries) {
    std::string name = ResultFileName(n, ext);
    std::string path = dir + "/" + name;
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (!fd) {
      if (errno == EEXIST) continue;
      return SysError("create " + path);
    }
    Status s = sys::WriteAll(fd.get(), data);
    if (!s.ok()) {
      ::unlink(path.c_str());
      return std::move(s).error();
    }
    *next = n + 1;
    return name;
  }
  return MakeError(ErrorCode::kResourceExhausted, "no free cove-result-N." + std::string(ext) +
                                                      " name in " + dir);
}

// ---------------------------------------------------------------- run

namespace {

constexpr size_t kMaxCode = 64u << 20;

// What the signal handler and the watcher thread share with Commands::Run.
int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

enum Phase { kBusy, kPrompt, kRunning };

// Set when a signal ends the run: the main thread prints nothing more (its
// stream reports the context's deletion).
std::atomic<bool> g_quitting{false};

struct Shared {
  std::mutex mu;            // held while the context is created or deleted
  std::string ctx_path;     // .../api/contexts/CTX ("" before there is one)
  bool owned = false;       // created by this run: deleted at exit
  bool repl = false;
  std::atomic<int> phase{kBusy};
  std::atomic<int> interrupts{0};  // Ctrl-C during the current execution
  int notify_w = -1;               // tells the REPL's reader about Ctrl-C at the prompt
  std::unique_ptr<HttpClient> http;  // the watcher's own
};

// Deletes the context if this run created it; called with mu held.
void DeleteOwned(Shared& sh, HttpClient& http, bool quiet) {
  if (!sh.owned || sh.ctx_path.empty()) return;
  auto r = http.Json("DELETE", sh.ctx_path, nullptr);
  if (!r.ok() && !quiet && ApiCode(r.error()) != "CONTEXT_NOT_FOUND") {
    std::fprintf(stderr, "cove: deleting the context failed: %s\n",
                 DescribeError(r.error()).c_str());
  }
  sh.ctx_path.clear();
  sh.owned = false;
}

void Watch(Shared* sh) {
  for (;;) {
    unsigned char b;
    ssize_t n = ::read(g_signal_pipe[0], &b, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || b == 0) return;  // 0: Run is done
    int sig = b;
    if (sig == SIGINT && sh->repl) {
      if (sh->phase == kPrompt) {
        char one = 1;
        [[maybe_unused]] ssize_t w = ::write(sh->notify_w, &one, 1);
        continue;
      }
      if (sh->phase == kRunning && ++sh->interrupts < 3) {
        std::string path;
        {
          std::lock_guard lock(sh->mu);
          path = sh->ctx_path;
        }
        if (!path.empty()) {
          auto r = sh->http->Json("POST", path + "/interrupt", nullptr);
          if (!r.ok()) {
            std::fprintf(stderr, "\ncove: interrupting failed: %s\n",
                         DescribeError(r.error()).c_str());
          }
        }
        continue;
      }
      // A third Ctrl-C while the code ignores interrupts: give up on it.
    }
    // Terminate: stop or delete the context, then exit as if killed.
    g_quitting = true;
    std::lock_guard lock(sh->mu);  // waits for a creation in flight
    if (!sh->ctx_path.empty() && !sh->owned && sh->phase == kRunning) {
      // Someone else's context: leave it alive but stop our code.
      (void)sh->http->Json("POST", sh->ctx_path + "/interrupt", nullptr);
    }
    DeleteOwned(*sh, *sh->http, true);
    std::fflush(stdout);
    if (sig == SIGINT) std::fputc('\n', stderr);
    std::fflush(stderr);
    ::_exit(128 + sig);
  }
}

// Prints the events of one execution: output as it comes, rich results,
// errors. Tracks whether the terminal is at the start of a line (for the
// REPL's prompt).
class Printer {
 public:
  // interrupts: the REPL's Ctrl-C count (the terminal echoed "^C"), or null.
  Printer(bool raw_json, int* next_file, char* last_char, const std::atomic<int>* interrupts)
      : raw_json_(raw_json), next_file_(next_file), last_(last_char), interrupts_(interrupts) {}

  bool complete = false;
  bool error = false;
  bool timed_out = false;
  std::optional<Error> failure;

  bool OnEvent(const SseEvent& ev) {
    auto parsed = ParseJsonEvent(ev);
    if (!parsed.ok()) {
      failure = std::move(parsed).error();
      return false;
    }
    const json& j = parsed->body;
    const std::string& type = parsed->type;
    if (raw_json_) Write(stdout, ev.data + "\n");
    if (type == "execution_complete") {
      complete = true;
      timed_out = j.value("timed_out", false);
      return false;
    }
    if (type == "error") error = true;
    if (raw_json_) return true;
    if (type == "stdout" || type == "stderr") {
      Write(type == "stdout" ? stdout : stderr, Str(j, "text"));
    } else if (type == "result") {
      OnResult(j);
    } else if (type == "error") {
      OnError(j);
    }
    return true;
  }

 private:
  void Write(FILE* f, std::string_view s) {
    if (s.empty() || g_quitting) return;
    if (interrupts_ && *interrupts_ > seen_interrupts_) {
      seen_interrupts_ = *interrupts_;
      std::fputc('\n', stdout);  // after the "^C"
      std::fflush(stdout);
    }
    if (!closed_ && (std::fwrite(s.data(), 1, s.size(), f) != s.size() || std::fflush(f) != 0)) {
      closed_ = true;  // e.g. `cove run ... | head`: keep draining
    }
    *last_ = s.back();
  }

  void Line(FILE* f, std::string s) {
    if (s.empty() || s.back() != '\n') s += '\n';
    Write(f, s);
  }

  void OnResult(const json& j) {
    static const char* kImages[] = {"png", "jpeg", "svg"};
    for (const char* fmt : kImages) {
      std::string data = Str(j, fmt);
      if (data.empty()) continue;
      std::string bytes;
      if (std::string_view(fmt) == "svg") {
        bytes = std::move(data);
      } else {
        Base64Decoder d;
        Status s = d.Feed(data, &bytes);
        if (s.ok()) s = d.Finish(&bytes);
        if (!s.ok()) {
          Line(stderr, std::string("cove: the ") + fmt + " result is not valid base64");
          continue;
        }
      }
      auto name = SaveResultFile(".", std::string_view(fmt) == "jpeg" ? "jpg" : fmt, bytes,
                                 next_file_);
      if (!name.ok()) {
        Line(stderr, "cove: saving the image failed: " + DescribeError(name.error()));
        continue;
      }
      auto size = std::string_view(fmt) == "png"    ? PngSize(bytes)
                  : std::string_view(fmt) == "jpeg" ? JpegSize(bytes)
                                                    : std::nullopt;
      std::string note = "[image saved to " + *name;
      if (size) note += " (" + std::to_string(size->first) + "x" + std::to_string(size->second) + ")";
      Line(stdout, note + "]");
      return;  // the text of an image ("<Figure size ...>") says nothing more
    }
    std::string text = Str(j, "text");
    bool richer = false;  // another format says more than a "<... object>" text
    for (const char* fmt : {"markdown", "latex", "json", "html", "javascript"}) {
      if (j.contains(fmt) && !j[fmt].is_null()) richer = true;
    }
    if (!text.empty() && !(richer && IsPlaceholderText(text))) {
      Line(stdout, text);
    } else if (auto it = j.find("json"); it != j.end() && !it->is_null()) {
      Line(stdout, it->dump(2));
    } else if (std::string md = Str(j, "markdown"); !md.empty()) {
      Line(stdout, md);
    } else if (std::string latex = Str(j, "latex"); !latex.empty()) {
      Line(stdout, latex);
    } else if (std::string html = Str(j, "html"); !html.empty()) {
      auto name = SaveResultFile(".", "html", html, next_file_);
      if (name.ok()) {
        Line(stdout, "[HTML result saved to " + *name + "]");
      } else {
        Line(stderr, "cove: saving the HTML result failed: " + DescribeError(name.error()));
      }
    } else if (j.contains("javascript")) {
      Line(stdout, "[javascript result not shown]");
    }
  }

  void OnError(const json& j) {
    std::string ename = Str(j, "ename");
    std::string evalue = Str(j, "evalue");
    std::string head = evalue.empty() ? ename : ename + ": " + evalue;
    bool has_head = false;
    if (auto it = j.find("traceback"); it != j.end() && it->is_array()) {
      for (const auto& l : *it) {
        std::string line = l.is_string() ? l.get<std::string>() : l.dump();
        if (!ename.empty() && line.rfind(ename + ":", 0) == 0) has_head = true;
        Line(stderr, line);
      }
    }
    if (!has_head && !head.empty()) Line(stderr, head);
  }

  bool raw_json_;
  int* next_file_;
  char* last_;
  const std::atomic<int>* interrupts_;
  int seen_interrupts_ = 0;
  bool closed_ = false;
};

enum class ReadStatus { kLine, kEof, kInterrupted };

// Reads one line from stdin (a terminal in canonical mode) unless Ctrl-C
// (a byte on notify_r) comes first.
ReadStatus ReadLine(int notify_r, std::string* buf, std::string* line, bool* eof) {
  for (;;) {
    size_t nl = buf->find('\n');
    if (nl != std::string::npos) {
      *line = buf->substr(0, nl);
      buf->erase(0, nl + 1);
      return ReadStatus::kLine;
    }
    if (*eof) {
      if (buf->empty()) return ReadStatus::kEof;
      *line = std::move(*buf);
      buf->clear();
      return ReadStatus::kLine;
    }
    struct pollfd p[2] = {{STDIN_FILENO, POLLIN, 0}, {notify_r, POLLIN, 0}};
    int n = ::poll(p, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      *eof = true;
      continue;
    }
    if (p[1].revents & POLLIN) {
      char drain[64];
      while (::read(notify_r, drain, sizeof drain) > 0) {
      }
      buf->clear();
      return ReadStatus::kInterrupted;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char chunk[4096];
      ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        *eof = true;
        continue;
      }
      buf->append(chunk, static_cast<size_t>(got));
    }
  }
}

}  // namespace

Result<int> Commands::Run(const RunOptions& o) {
  std::string language = o.language;
  if (!o.context.empty() && o.context.find('/') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid context id \"" + o.context + "\"");
  }
  // The code, read before anything is created: a missing file is a usage error.
  const bool interactive = o.file.empty() && ::isatty(STDIN_FILENO);
  std::string code;
  if (!interactive) {
    if (o.file.empty() || o.file == "-") {
      COVE_ASSIGN_OR_RETURN(code, sys::ReadAll(STDIN_FILENO, kMaxCode));
    } else {
      COVE_ASSIGN_OR_RETURN(code, sys::ReadFile(o.file, kMaxCode));
    }
  }
  COVE_TRY(RequireSandbox(o.id));
  const std::string contexts = SandboxPath(o.id, "/api/contexts");

  if (!o.context.empty()) {
    COVE_ASSIGN_OR_RETURN(std::string body, http_->Json("GET", contexts, nullptr));
    json j = json::parse(body, nullptr, false);
    bool found = false;
    if (j.is_object() && j.contains("contexts") && j["contexts"].is_array()) {
      for (const auto& c : j["contexts"]) {
        if (c.is_object() && Str(c, "id") == o.context) {
          found = true;
          std::string lang = Str(c, "language");
          if (!lang.empty()) {
            if (o.language_set && lang != o.language) {
              return MakeError(ErrorCode::kInvalidArgument,
                               "context \"" + o.context + "\" is " + lang + ", not " + o.language);
            }
            language = lang;
          }
        }
      }
    }
    if (!found) {
      Error e = MakeError(ErrorCode::kNotFound, "context \"" + o.context +
                                                    "\" not found in sandbox \"" + o.id + "\"");
      e.context["code"] = "CONTEXT_NOT_FOUND";
      return e;
    }
  }

  // Signals go to the watcher from here on.
  Shared sh;
  sh.repl = interactive;
  COVE_ASSIGN_OR_RETURN(sh.http, HttpClient::Create(opts_.url, opts_.token));
  UniqueFd notify_r, notify_w;
  {
    int p[2];
    if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) return SysError("pipe");
    ::fcntl(g_signal_pipe[1], F_SETFL, O_NONBLOCK);
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return SysError("pipe");
    notify_r.Reset(p[0]);
    notify_w.Reset(p[1]);
    sh.notify_w = notify_w.get();
  }
  sigset_t sigs, old_mask;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, &old_mask);
  std::thread watcher(Watch, &sh);  // starts with the signals blocked
  struct sigaction sa = {}, old_sa[3];
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESTART;  // curl is not bothered; the REPL's poll still wakes
  sigemptyset(&sa.sa_mask);
  const int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_sa[i]);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ScopeExit stop_watcher([&] {
    {
      std::lock_guard lock(sh.mu);
      DeleteOwned(sh, *http_, false);
    }
    unsigned char zero = 0;
    while (::write(g_signal_pipe[1], &zero, 1) < 0 && errno == EINTR) {
    }
    watcher.join();
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_sa[i], nullptr);
    ::close(g_signal_pipe[0]);
    ::close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  });

  std::string ctx = o.context;
  if (ctx.empty()) {
    std::lock_guard lock(sh.mu);
    json req = json::object();
    req["language"] = language;
    std::string body = req.dump();
    Result<std::string> r = std::string();
    {
      Progress progress("creating a " + language + " context");
      r = http_->Json("POST", contexts, &body, &progress);
    }
    if (!r.ok()) return std::move(r).error();
    json j = json::parse(*r, nullptr, false);
    ctx = j.is_object() ? Str(j, "contextId") : "";
    if (ctx.empty()) {
      return MakeError(ErrorCode::kInternal, "coved sent no contextId: " + r->substr(0, 200));
    }
    sh.owned = true;
    sh.ctx_path = contexts + "/" + EscapeSegment(ctx);
  } else {
    std::lock_guard lock(sh.mu);
    sh.ctx_path = contexts + "/" + EscapeSegment(ctx);
  }

  int next_file = 1;
  char last_char = '\n';
  struct Outcome {
    bool error = false;
    bool timed_out = false;
  };
  auto execute = [&](const std::string& source) -> cove::Result<Outcome> {
    json req = json::object();
    req["context_id"] = ctx;
    req["code"] = source;
    if (o.timeout_ms > 0) req["timeout_ms"] = o.timeout_ms;
    Printer printer(opts_.json, &next_file, &last_char, interactive ? &sh.interrupts : nullptr);
    sh.interrupts = 0;
    sh.phase = kRunning;
    Status s = http_->Stream(SandboxPath(o.id, "/api/execute/code"), req.dump(),
                             [&](const SseEvent& ev) { return printer.OnEvent(ev); });
    sh.phase = kBusy;
    if (!s.ok()) return std::move(s).error();
    if (printer.failure) return *printer.failure;
    if (!printer.complete) {
      return MakeError(ErrorCode::kUnavailable,
                       "the output stream ended before the execution completed");
    }
    return Outcome{printer.error, printer.timed_out};
  };

  if (!interactive) {
    COVE_ASSIGN_OR_RETURN(Outcome out, execute(code));
    return out.timed_out ? 124 : out.error ? 1 : 0;
  }

  // The REPL.
  const bool python = language == "python";
  const std::string primary = python ? ">>> " : "> ";
  std::fprintf(stderr, "%s context %s in sandbox %s (Ctrl-C interrupts, Ctrl-D exits)\n",
               language.c_str(), ctx.c_str(), o.id.c_str());
  std::string buf, line, source;
  bool eof = false;
  for (;;) {
    std::string prompt = source.empty() ? primary : "... ";
    if (last_char != '\n') prompt = "\n" + prompt;
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
    last_char = ' ';
    sh.phase = kPrompt;
    ReadStatus st = ReadLine(notify_r.get(), &buf, &line, &eof);
    sh.phase = kBusy;
    if (st == ReadStatus::kInterrupted) {
      std::fputs("\nKeyboardInterrupt\n", stdout);
      last_char = '\n';
      source.clear();
      continue;
    }
    if (st == ReadStatus::kEof) {
      std::fputc('\n', stdout);
      std::fflush(stdout);
      break;
    }
    last_char = '\n';  // the terminal echoed the newline
    if (source.empty() && IsBlank(line)) continue;
    source += source.empty() ? line : "\n" + line;
    if (NeedsMoreInput(source, language)) continue;
    auto out = execute(source);
    source.clear();
    if (!out.ok() && !g_quitting) {
      std::string msg = DescribeError(out.error());
      std::fflush(stdout);
      std::fprintf(stderr, "%scove: %s\n", last_char == '\n' ? "" : "\n", msg.c_str());
      last_char = '\n';
      std::string code_name = ApiCode(out.error());
      if (code_name == "CONTEXT_NOT_FOUND" || code_name == "SANDBOX_NOT_FOUND") return 2;
    }
  }
  return 0;
}

}  // namespace cove::cli
