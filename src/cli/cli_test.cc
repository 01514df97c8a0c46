#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/testing/wait_until.h"
#include "cli/commands.h"
#include "cli/http_client.h"
#include "cli/run.h"
#include "cli/sse_json.h"
#include "cli/shell_protocol.h"
#include "cli/stdin_pump.h"
#include "cli/terminal_mode.h"

namespace cove::cli {
namespace {

// ---------------------------------------------------------------- SSE

std::vector<SseEvent> ParseAll(const std::vector<std::string>& chunks) {
  std::vector<SseEvent> out;
  SseParser p([&](SseEvent e) { out.push_back(std::move(e)); });
  for (const auto& c : chunks) EXPECT_TRUE(p.Feed(c).ok());
  p.Finish();
  return out;
}

TEST(SseParser, CloudflareStyleDataOnlyEvents) {
  auto ev = ParseAll({"data: {\"type\":\"start\"}\n\ndata: {\"type\":\"complete\",\"exitCode\":3}\n\n"});
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].event, "");
  EXPECT_EQ(ev[0].data, "{\"type\":\"start\"}");
  EXPECT_EQ(ev[1].data, "{\"type\":\"complete\",\"exitCode\":3}");
}

TEST(SseParser, EventFieldMultiLineDataAndComments) {
  auto ev = ParseAll({": keep-alive\nevent: stdout\ndata: a\ndata:b\ndata\nid: 7\nretry: 10\n\n"});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].event, "stdout");
  EXPECT_EQ(ev[0].data, "a\nb\n");  // "data" alone is an empty data line
}

TEST(SseParser, OnlyOneLeadingSpaceIsStripped) {
  auto ev = ParseAll({"data:  two spaces\n\n"});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data, " two spaces");
}

TEST(SseParser, LineEndingsCrlfAndCr) {
  auto ev = ParseAll({"data: x\r\n\r\ndata: y\r\rdata: z\n\n"});
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].data, "x");
  EXPECT_EQ(ev[1].data, "y");
  EXPECT_EQ(ev[2].data, "z");
}

TEST(SseParser, EverySplitPointGivesTheSameEvents) {
  const std::string stream =
      "\xEF\xBB\xBF" "data: {\"type\":\"stdout\",\"data\":\"h\xC3\xA9llo\\n\"}\r\n\r\n"
      "event: e\r\ndata: 1\r\ndata: 2\r\n\r\n: c\n\ndata: last\n\n";
  auto whole = ParseAll({stream});
  ASSERT_EQ(whole.size(), 3u);
  EXPECT_EQ(whole[0].data, "{\"type\":\"stdout\",\"data\":\"h\xC3\xA9llo\\n\"}");
  EXPECT_EQ(whole[1].event, "e");
  EXPECT_EQ(whole[1].data, "1\n2");
  EXPECT_EQ(whole[2].data, "last");
  for (size_t i = 0; i <= stream.size(); ++i) {
    for (size_t j = i; j <= stream.size(); j += 7) {
      auto parts = ParseAll({stream.substr(0, i), stream.substr(i, j - i), stream.substr(j)});
      ASSERT_EQ(parts.size(), whole.size()) << "split at " << i << "," << j;
      for (size_t k = 0; k < parts.size(); ++k) {
        EXPECT_EQ(parts[k].data, whole[k].data);
        EXPECT_EQ(parts[k].event, whole[k].event);
      }
    }
  }
  // One byte at a time.
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  EXPECT_EQ(ParseAll(bytes).size(), 3u);
}

TEST(SseParser, UnterminatedLastEventIsDropped) {
  auto ev = ParseAll({"data: a\n\ndata: b\n"});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].data, "a");
}

TEST(SseParser, EventWithoutDataIsNotDispatched) {
  auto ev = ParseAll({"event: ping\n\ndata: x\n\n"});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].event, "");  // the event name is reset after each blank line
  EXPECT_EQ(ev[0].data, "x");
}

TEST(SseParser, OverlongLineIsAnError) {
  SseParser p([](SseEvent) {}, 16);
  EXPECT_TRUE(p.Feed("data: 0123456").ok());
  EXPECT_FALSE(p.Feed("789abcdef0123").ok());
}

// ---------------------------------------------------------------- quoting

// Runs `sh -c "printf '%s\0' <joined>"` and splits its output at NULs: what
// the shell in a sandbox will see as argv.
std::vector<std::string> ShellSplit(const std::string& joined) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::string script = "printf '%s\\0' " + joined;
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<std::string> words;
  size_t start = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\0') {
      words.push_back(out.substr(start, i - start));
      start = i + 1;
    }
  }
  return words;
}

TEST(ShellJoin, JoinsQuotedWords) {
  EXPECT_EQ(ShellJoin({"echo", "a b", ""}), "echo 'a b' ''");
}

TEST(ShellJoin, RoundTripsThroughARealShell) {
  std::vector<std::string> argv = {
      "plain", "", " ", "two words", "it's", "'", "''", "\"", "\\", "$HOME", "$(id)", "`id`",
      "a;b", "a&&b", "a|b", "*", "?", "[a]", "~", "#comment", "!", "new\nline", "tab\there",
      "{a,b}", "<in", ">out", "é ü 漢字", "--flag=x y", "%s", "-n"};
  EXPECT_EQ(ShellSplit(ShellJoin(argv)), argv);

  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> random(1 + rng() % 4);
    for (auto& w : random) {
      size_t len = rng() % 12;
      for (size_t i = 0; i < len; ++i) w.push_back(static_cast<char>(1 + rng() % 127));
    }
    ASSERT_EQ(ShellSplit(ShellJoin(random)), random) << ShellJoin(random);
  }
}

// ---------------------------------------------------------------- ID:PATH

TEST(ParseRemotePath, RemoteForms) {
  auto r = ParseRemotePath("sb-1:/workspace/a.txt");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->id, "sb-1");
  EXPECT_EQ((*r)->path, "/workspace/a.txt");

  r = ParseRemotePath("box:rel/path:with:colons");
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->id, "box");
  EXPECT_EQ((*r)->path, "rel/path:with:colons");
}

TEST(ParseRemotePath, LocalForms) {
  for (const char* local : {"file.txt", "/tmp/a:b", "./x:y", "dir/sub:z", "-"}) {
    auto r = ParseRemotePath(local);
    ASSERT_TRUE(r.ok()) << local;
    EXPECT_FALSE(r->has_value()) << local;
  }
}

TEST(ParseRemotePath, Errors) {
  EXPECT_FALSE(ParseRemotePath("sb:").ok());
  EXPECT_FALSE(ParseRemotePath(":/etc/passwd").ok());
  EXPECT_FALSE(ParseRemotePath(":").ok());
}

TEST(ParseKeyValue, Forms) {
  auto kv = ParseKeyValue("A=b=c");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->first, "A");
  EXPECT_EQ(kv->second, "b=c");
  kv = ParseKeyValue("EMPTY=");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->second, "");
  EXPECT_FALSE(ParseKeyValue("noequals").ok());
  EXPECT_FALSE(ParseKeyValue("=v").ok());
}

TEST(BaseName, Forms) {
  EXPECT_EQ(BaseName("/a/b.txt"), "b.txt");
  EXPECT_EQ(BaseName("/a/b/"), "b");
  EXPECT_EQ(BaseName("rel"), "rel");
  EXPECT_EQ(BaseName("/"), "");
}

// ---------------------------------------------------------------- errors, URLs

TEST(Errors, EnvelopeIsDecoded) {
  Error e = ErrorFromResponse(
      404, R"({"code":"SANDBOX_NOT_FOUND","message":"Sandbox \"x\" not found","httpStatus":404})");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(ApiCode(e), "SANDBOX_NOT_FOUND");
  EXPECT_EQ(DescribeError(e), "sandbox \"x\" not found (SANDBOX_NOT_FOUND)");
}

TEST(Errors, NonJsonBody) {
  Error e = ErrorFromResponse(502, "Bad Gateway\nmore");
  EXPECT_EQ(ApiCode(e), "");
  EXPECT_EQ(DescribeError(e), "HTTP 502: Bad Gateway");
}

TEST(EscapeSegment, Forms) {
  EXPECT_EQ(EscapeSegment("sb-1"), "sb-1");
  EXPECT_EQ(EscapeSegment("../x"), "..%2Fx");
  EXPECT_EQ(EscapeSegment(".."), "%2E%2E");
  EXPECT_EQ(EscapeSegment("a b?#"), "a%20b%3F%23");
}

// ---------------------------------------------------------------- cove shell

TEST(ShellProtocol, ParseBaseUrl) {
  auto ep = ParseBaseUrl("http://127.0.0.1:7070");
  ASSERT_TRUE(ep.ok());
  EXPECT_FALSE(ep->tls);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, "7070");
  EXPECT_EQ(ep->host_header, "127.0.0.1:7070");
  EXPECT_EQ(ep->path_prefix, "");

  ep = ParseBaseUrl("https://cove.example/base/");
  ASSERT_TRUE(ep.ok());
  EXPECT_TRUE(ep->tls);
  EXPECT_EQ(ep->host, "cove.example");
  EXPECT_EQ(ep->port, "443");
  EXPECT_EQ(ep->path_prefix, "/base");

  ep = ParseBaseUrl("http://[::1]:8080/");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, "8080");
  EXPECT_EQ(ep->host_header, "[::1]:8080");

  EXPECT_EQ(ParseBaseUrl("http://h").value().port, "80");
  EXPECT_FALSE(ParseBaseUrl("ftp://h").ok());
  EXPECT_FALSE(ParseBaseUrl("http://:80").ok());
  EXPECT_FALSE(ParseBaseUrl("http://h:8x").ok());
  EXPECT_FALSE(ParseBaseUrl("http://u@h").ok());
  EXPECT_FALSE(ParseBaseUrl("http://[::1").ok());
}

TEST(ShellProtocol, PtyTarget) {
  WsEndpoint ep = ParseBaseUrl("http://h:1/p").value();
  EXPECT_EQ(PtyTarget(ep, "sb-1", "shell", WindowSize{100, 30}),
            "/p/v1/sandboxes/sb-1/ws/pty?sessionId=shell&cols=100&rows=30");
  EXPECT_EQ(PtyTarget(ep, "sb-1", "a b&c", std::nullopt),
            "/p/v1/sandboxes/sb-1/ws/pty?sessionId=a%20b%26c");
}

TEST(ShellProtocol, ResizeMessage) {
  auto j = nlohmann::json::parse(ResizeMessage({120, 40}));
  EXPECT_EQ(j, (nlohmann::json{{"type", "resize"}, {"cols", 120}, {"rows", 40}}));
}

TEST(ShellProtocol, ParseServerMessage) {
  using Kind = ServerMessage::Kind;
  EXPECT_EQ(ParseServerMessage(R"({"type":"ready"})").kind, Kind::kReady);

  auto m = ParseServerMessage(R"({"type":"exit","code":7})");
  EXPECT_EQ(m.kind, Kind::kExit);
  EXPECT_EQ(m.exit_status, 7);
  EXPECT_EQ(ParseServerMessage(R"({"type":"exit","code":137,"signal":"SIGKILL"})").exit_status,
            137);
  EXPECT_EQ(ParseServerMessage(R"({"type":"exit","signal":"SIGTERM"})").exit_status, 143);
  EXPECT_EQ(ParseServerMessage(R"({"type":"exit","code":-1,"signal":9})").exit_status, 137);
  EXPECT_EQ(ParseServerMessage(R"({"type":"exit","code":-1})").exit_status, 255);
  EXPECT_EQ(ParseServerMessage(R"({"type":"exit","code":300})").exit_status, 255);

  m = ParseServerMessage(R"({"type":"error","message":"no PTY"})");
  EXPECT_EQ(m.kind, Kind::kError);
  EXPECT_EQ(m.message, "no PTY");
  EXPECT_EQ(ParseServerMessage(R"({"type":"error"})").message, "the terminal failed");

  EXPECT_EQ(ParseServerMessage("not json").kind, Kind::kOther);
  EXPECT_EQ(ParseServerMessage(R"({"type":"later"})").kind, Kind::kOther);
  EXPECT_EQ(ParseServerMessage(R"([1,2])").kind, Kind::kOther);
}

TEST(TerminalMode, RawSettingsMatchCfmakeraw) {
  termios in{};
  in.c_iflag = ICRNL | IXON | BRKINT | IUTF8;
  in.c_oflag = OPOST | ONLCR;
  in.c_lflag = ICANON | ECHO | ISIG | IEXTEN | ECHOE;
  in.c_cflag = CS7 | PARENB | CREAD;
  termios expected = in;
  cfmakeraw(&expected);
  termios raw = RawSettings(in);
  EXPECT_EQ(raw.c_iflag, expected.c_iflag);
  EXPECT_EQ(raw.c_oflag, expected.c_oflag);
  EXPECT_EQ(raw.c_lflag, expected.c_lflag);
  EXPECT_EQ(raw.c_cflag, expected.c_cflag);
  EXPECT_EQ(raw.c_cc[VMIN], 1);
  EXPECT_EQ(raw.c_cc[VTIME], 0);
}

TEST(TerminalMode, RawTerminalRestoresOnDestruction) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  winsize ws{};
  ws.ws_col = 91;
  ws.ws_row = 17;
  ASSERT_EQ(::ioctl(slave, TIOCSWINSZ, &ws), 0);
  auto size = TerminalSize(slave);
  ASSERT_TRUE(size);
  EXPECT_EQ(size->cols, 91);
  EXPECT_EQ(size->rows, 17);

  termios before;
  ASSERT_EQ(::tcgetattr(slave, &before), 0);
  ASSERT_TRUE(before.c_lflag & ICANON);
  {
    auto raw = RawTerminal::Enter(slave);
    ASSERT_TRUE(raw.ok() && raw->has_value());
    termios now;
    ASSERT_EQ(::tcgetattr(slave, &now), 0);
    EXPECT_FALSE(now.c_lflag & (ICANON | ECHO | ISIG));
    std::optional<RawTerminal> moved = std::move(*raw);  // still restores once
  }
  termios after;
  ASSERT_EQ(::tcgetattr(slave, &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  auto none = RawTerminal::Enter(pipe_fds[0]);  // not a terminal: nothing to do
  EXPECT_TRUE(none.ok() && !none->has_value());
  EXPECT_FALSE(TerminalSize(pipe_fds[0]));
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  ::close(slave);
  ::close(master);
}

TEST(StdinPump, ChunksThenEndOfInputAndBackpressure) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::mutex mu;
  std::string got;
  std::atomic<bool> ended = false;
  std::atomic<size_t> chunks = 0;
  {
    StdinPump pump(fds[0], [&](std::string chunk) {
      std::lock_guard lock(mu);
      if (chunk.empty()) {
        ended = true;
      } else {
        got += chunk;
        ++chunks;
      }
    }, /*max_in_flight=*/4);
    ASSERT_EQ(::write(fds[1], "hello", 5), 5);
    ASSERT_TRUE(cove::testing::WaitUntil([&] { return chunks.load() == 1; }, "the first chunk"));
    // Over the bound: nothing more is read until the bytes are consumed.
    ASSERT_EQ(::write(fds[1], "world", 5), 5);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the point: a read that must not happen
    EXPECT_EQ(chunks.load(), 1u);
    pump.Consumed(5);
    ASSERT_TRUE(cove::testing::WaitUntil([&] { return chunks.load() == 2; }, "the second chunk, once the first was consumed"));
    pump.Consumed(5);
    ::close(fds[1]);
    ASSERT_TRUE(cove::testing::WaitUntil([&] { return ended.load(); }, "the end of input"));
  }
  EXPECT_EQ(got, "helloworld");
  ::close(fds[0]);
}

TEST(StdinPump, DestructionStopsAWaitingRead) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  { StdinPump pump(fds[0], [](std::string) {}); }  // joins without any input
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace cove::cli

// ---------------------------------------------------------------- cove run

namespace cove::cli {
namespace {

TEST(RunInput, PythonSingleLines) {
  EXPECT_FALSE(NeedsMoreInput("x = 1", "python"));
  EXPECT_FALSE(NeedsMoreInput("print('a:')", "python"));
  EXPECT_FALSE(NeedsMoreInput("x = 1  # comment with ( and :", "python"));
  EXPECT_FALSE(NeedsMoreInput("s = ')'", "python"));
  EXPECT_FALSE(NeedsMoreInput("s = '''one line'''", "python"));
  EXPECT_FALSE(NeedsMoreInput("d = {'a': 1}", "python"));
}

TEST(RunInput, PythonBlocksWaitForABlankLine) {
  EXPECT_TRUE(NeedsMoreInput("def f():", "python"));
  EXPECT_TRUE(NeedsMoreInput("def f():\n    return 1", "python"));
  EXPECT_FALSE(NeedsMoreInput("def f():\n    return 1\n", "python"));
  EXPECT_FALSE(NeedsMoreInput("def f():\n    return 1\n   ", "python"));
  EXPECT_TRUE(NeedsMoreInput("for i in range(3):  # loop", "python"));
  EXPECT_TRUE(NeedsMoreInput("@decorator", "python"));
  EXPECT_TRUE(NeedsMoreInput("class A:\n    x = 1\n\n    y = 2", "python"));
}

TEST(RunInput, PythonBracketsStringsAndBackslash) {
  EXPECT_TRUE(NeedsMoreInput("x = (1,", "python"));
  EXPECT_TRUE(NeedsMoreInput("x = [\n  1,", "python"));
  EXPECT_FALSE(NeedsMoreInput("x = [\n  1,\n]", "python"));  // balanced, no block
  EXPECT_TRUE(NeedsMoreInput("d = {'a':", "python"));
  EXPECT_FALSE(NeedsMoreInput("d = {'a':\n 1}", "python"));  // a ':' inside brackets
  EXPECT_TRUE(NeedsMoreInput("s = \"\"\"text", "python"));
  EXPECT_TRUE(NeedsMoreInput("s = '''a\n\nb", "python"));
  EXPECT_FALSE(NeedsMoreInput("s = '''a\n(\nb'''", "python"));
  EXPECT_TRUE(NeedsMoreInput("x = 1 + \\", "python"));
  EXPECT_FALSE(NeedsMoreInput("x = 1 + \\\n 2", "python"));
  EXPECT_FALSE(NeedsMoreInput("s = 'it\\'s ('", "python"));
  EXPECT_FALSE(NeedsMoreInput(")", "python"));  // the runner reports the syntax error
}

TEST(RunInput, JavaScript) {
  for (const char* lang : {"javascript", "typescript"}) {
    EXPECT_FALSE(NeedsMoreInput("let x = 1", lang));
    EXPECT_TRUE(NeedsMoreInput("function f() {", lang));
    EXPECT_TRUE(NeedsMoreInput("function f() {\n  return 1", lang));
    EXPECT_FALSE(NeedsMoreInput("function f() {\n  return 1\n}", lang));
    EXPECT_FALSE(NeedsMoreInput("const s = '{'", lang));
    EXPECT_FALSE(NeedsMoreInput("const s = \"({[\" // {", lang));
    EXPECT_TRUE(NeedsMoreInput("const t = `a", lang));
    EXPECT_FALSE(NeedsMoreInput("const t = `a ${ {b: 1}.b } {`", lang));
    EXPECT_TRUE(NeedsMoreInput("const t = `${ (1", lang));
    EXPECT_TRUE(NeedsMoreInput("/* (", lang));
    EXPECT_FALSE(NeedsMoreInput("/* ( */ f()", lang));
    EXPECT_FALSE(NeedsMoreInput("if (x) {\n}\n", lang));  // no blank line needed
  }
  EXPECT_TRUE(NeedsMoreInput("interface A {\n  x: number", "typescript"));
}

TEST(RunImages, PngSize) {
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\x02\x80\0\0\x01\xe0\x08\x06\0\0\0", 29);
  auto size = PngSize(png);
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(size->first, 640u);
  EXPECT_EQ(size->second, 480u);
  EXPECT_FALSE(PngSize(png.substr(0, 23)).has_value());
  EXPECT_FALSE(PngSize("GIF89a....................").has_value());
  png[12] = 'X';
  EXPECT_FALSE(PngSize(png).has_value());
}

TEST(RunImages, JpegSize) {
  // SOI, an APP0 segment of 16 bytes, SOF0 with height 300 and width 400.
  std::string jpeg("\xff\xd8\xff\xe0\x00\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0", 20);
  jpeg += std::string("\xff\xc0\x00\x11\x08\x01\x2c\x01\x90\x03", 10);
  auto size = JpegSize(jpeg);
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(size->first, 400u);
  EXPECT_EQ(size->second, 300u);
  EXPECT_FALSE(JpegSize(jpeg.substr(0, 24)).has_value());
  EXPECT_FALSE(JpegSize(std::string("\xff\xd8\xff\xda\x00\x02", 6)).has_value());
  EXPECT_FALSE(JpegSize("not a jpeg").has_value());
}

TEST(RunResults, PlaceholderText) {
  EXPECT_TRUE(IsPlaceholderText("<IPython.core.display.HTML object>"));
  EXPECT_TRUE(IsPlaceholderText("<Figure size 400x300 with 1 Axes>"));
  EXPECT_FALSE(IsPlaceholderText("   a\n0  1"));
  EXPECT_FALSE(IsPlaceholderText("'<b>'x"));
  EXPECT_FALSE(IsPlaceholderText("<a>\n<b>"));
  EXPECT_FALSE(IsPlaceholderText("<"));
}

TEST(RunImages, ResultFilesNeverOverwrite) {
  char tmpl[] = "/tmp/cove-run-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  EXPECT_EQ(ResultFileName(3, "png"), "cove-result-3.png");
  {
    int fd = ::open((dir + "/cove-result-1.png").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "old", 3), 3);
    ::close(fd);
  }
  int next = 1;
  auto a = SaveResultFile(dir, "png", "new", &next);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "cove-result-2.png");
  EXPECT_EQ(next, 3);
  auto b = SaveResultFile(dir, "html", "<b>", &next);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, "cove-result-3.html");
  char buf[8] = {};
  int fd = ::open((dir + "/cove-result-1.png").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::read(fd, buf, sizeof buf), 3);
  ::close(fd);
  EXPECT_STREQ(buf, "old");
  EXPECT_FALSE(SaveResultFile(dir + "/missing", "png", "x", &next).ok());
  for (const char* f : {"cove-result-1.png", "cove-result-2.png", "cove-result-3.html"}) {
    ::unlink((dir + "/" + f).c_str());
  }
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace cove::cli

namespace cove::cli {
namespace {

TEST(SseJson, TypeComesFromTheBodyElseTheEventName) {
  auto typed = ParseJsonEvent(SseEvent{"ignored", R"({"type":"stdout","text":"hi","n":3})"});
  ASSERT_TRUE(typed.ok());
  EXPECT_EQ(typed->type, "stdout");
  EXPECT_EQ(Str(typed->body, "text"), "hi");
  EXPECT_EQ(Str(typed->body, "n"), "3");  // non-strings as JSON
  EXPECT_EQ(Str(typed->body, "missing"), "");
  auto named = ParseJsonEvent(SseEvent{"complete", R"({"bytesRead":1})"});
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->type, "complete");
}

TEST(SseJson, DataThatIsNotAnObjectIsAnError) {
  for (const char* data : {"not json", "[1,2]", "\"text\""}) {
    auto r = ParseJsonEvent(SseEvent{"", data});
    ASSERT_FALSE(r.ok()) << data;
    EXPECT_NE(r.error().message.find("invalid event"), std::string::npos);
  }
}

}  // namespace
}  // namespace cove::cli
