#include "agent/ops.h"

#include <gtest/gtest.h>

#include "agent/limits.h"

namespace cove::agent {
namespace {

TEST(OpsTest, ExecRoundTrips) {
  ExecOp op;
  op.command = "ls -la";
  op.session_id = "default";
  op.env = EnvVars{{"A", "1"}};
  op.timeout_ms = 5000;
  Json j = ToJson(op);
  EXPECT_EQ(j, Json::parse(R"({"op":"exec","command":"ls -la","sessionId":"default","env":{"A":"1"},"timeoutMs":5000})"));
  auto back = ParseOp<ExecOp>(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->command, "ls -la");
  EXPECT_EQ(back->session_id, "default");
  EXPECT_EQ(back->env, (EnvVars{{"A", "1"}}));
  EXPECT_FALSE(back->cwd.has_value());
  EXPECT_EQ(back->timeout_ms, 5000);
}

TEST(OpsTest, EveryOpRoundTripsThroughParseAnyOp) {
  FileListOp list;
  list.path = "/w";
  list.include_hidden = true;
  FsWatchOp watch;
  watch.path = "/w";
  watch.exclude = Strings{"node_modules"};
  PortWatchOp port;
  port.port = 8080;
  port.mode = "tcp";
  ContextRunOp run;
  run.context_id = "c1";
  run.code = "print(1)";
  FileExistsOp exists;
  exists.path = "/etc/hosts";
  for (const AnyOp& op : std::vector<AnyOp>{list, watch, port, run, exists, ProcessKillAllOp{}, SessionListOp{}}) {
    Json j = ToJson(op);
    auto back = ParseAnyOp(j);
    ASSERT_TRUE(back.ok()) << j.dump() << ": " << back.error().message;
    EXPECT_EQ(back->index(), op.index()) << j.dump();
    EXPECT_EQ(ToJson(*back), j);
  }
}

TEST(OpsTest, DerivedOpsKeepTheirOwnName) {
  ProcessLogsOp logs;
  logs.process_id = "p1";
  EXPECT_EQ(ToJson(logs)["op"], "process.logs");
  auto back = ParseAnyOp(ToJson(logs));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::holds_alternative<ProcessLogsOp>(*back));
  EXPECT_FALSE(ParseOp<ProcessGetOp>(ToJson(logs)).ok());
}

TEST(OpsTest, OptionalFieldsMayBeAbsentOrNullAndBoolsKeepDefaults) {
  auto w = ParseOp<FsWatchOp>(Json::parse(R"({"op":"fs.watch","path":"/w","sessionId":null})"));
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_TRUE(w->recursive);  // the default of fs.watch
  EXPECT_FALSE(w->session_id.has_value());
  EXPECT_FALSE(w->include.has_value());
}

TEST(OpsTest, RejectsWrongTypesAndBounds) {
  const char* bad[] = {
      R"([1,2])",
      R"({"command":"ls"})",
      R"({"op":5,"command":"ls"})",
      R"({"op":"nope"})",
      R"({"op":"exec"})",
      R"({"op":"exec","command":""})",
      R"({"op":"exec","command":7})",
      R"({"op":"exec","command":"ls","timeoutMs":-1})",
      R"({"op":"exec","command":"ls","timeoutMs":1.5})",
      R"({"op":"exec","command":"ls","timeoutMs":18446744073709551615})",
      R"({"op":"exec","command":"ls","env":{"A":1}})",
      R"({"op":"exec","command":"ls","env":["A"]})",
      R"({"op":"exec","command":"ls","sessionId":""})",
      R"({"op":"file.read","path":"/a","encoding":"latin1"})",
      R"({"op":"file.read","path":"/a","rawData":"yes"})",
      R"({"op":"file.read","path":""})",
      R"({"op":"file.mkdir","path":"/a","recursive":1})",
      R"({"op":"port.watch","port":0})",
      R"({"op":"port.watch","port":70000})",
      R"({"op":"port.watch","port":80,"mode":"udp"})",
      R"({"op":"port.watch","port":80,"statusMin":99})",
      R"({"op":"fs.watch","path":"/a","include":["*.js",3]})",
      R"({"op":"fs.watch","path":"/a","events":"create"})",
      R"({"op":"pty.resize","sessionId":"s","cols":80})",
      R"({"op":"pty.resize","sessionId":"s","cols":0,"rows":24})",
      R"({"op":"process.kill","processId":"p","signal":65})",
      R"({"op":"context.run","contextId":"c"})",
  };
  for (const char* text : bad) {
    auto r = ParseAnyOp(Json::parse(text));
    EXPECT_FALSE(r.ok()) << text;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << text;
    }
  }
  Json nul = {{"op", "file.read"}, {"path", std::string("/a\0b", 4)}};
  EXPECT_FALSE(ParseAnyOp(nul).ok());
  Json big = {{"op", "exec"}, {"command", std::string(kMaxCommandBytes + 1, 'x')}};
  auto r = ParseAnyOp(big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, CommandSizeProblem(kMaxCommandBytes + 1));
}

TEST(OpsTest, ErrorsNameTheField) {
  auto r = ParseOp<PortWatchOp>(Json::parse(R"({"op":"port.watch","port":"80"})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "field 'port' must be an integer from 1 to 65535");
  auto m = ParseOp<FileRenameOp>(Json::parse(R"({"op":"file.rename","oldPath":"/a"})"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().message, "missing field 'newPath'");
  EXPECT_EQ(m.error().context.at("field"), "newPath");
  auto u = ParseAnyOp(Json::parse(R"({"op":"file.nope"})"));
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error().context.at("op"), "file.nope");
  EXPECT_EQ(u.error().context.count("field"), 0u);
}

// The problem of parsing `text` (which must fail): {message, field}.
std::pair<std::string, std::string> Refusal(const char* text) {
  auto r = ParseAnyOp(Json::parse(text));
  if (r.ok()) return {"parsed", ""};
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << text;
  auto field = r.error().context.find("field");
  return {r.error().message, field == r.error().context.end() ? "" : field->second};
}

TEST(OpsTest, FileOpsNameTheMissingOrMistypedField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"op":"file.read"})", "path"},
      {R"({"op":"file.read","path":null})", "path"},
      {R"({"op":"file.read","path":7})", "path"},
      {R"({"op":"file.read","path":"/a","maxBytes":"10"})", "maxBytes"},
      {R"({"op":"file.read","path":"/a","maxBytes":1.5})", "maxBytes"},
      {R"({"op":"file.read","path":"/a","maxBytes":-1})", "maxBytes"},
      {R"({"op":"file.read","path":"/a","encoding":5})", "encoding"},
      {R"({"op":"file.read","path":"/a","sessionId":7})", "sessionId"},
      {R"({"op":"file.write","content":"x"})", "path"},
      {R"({"op":"file.write","path":"/a","content":5})", "content"},
      {R"({"op":"file.write","path":"/a","content":"x","encoding":"latin1"})", "encoding"},
      {R"({"op":"file.write","path":"/a","contentInData":1})", "contentInData"},
      {R"({"op":"file.delete","path":""})", "path"},
      {R"({"op":"file.exists","path":["/a"]})", "path"},
      {R"({"op":"file.rename","newPath":"/b"})", "oldPath"},
      {R"({"op":"file.rename","oldPath":"/a","newPath":""})", "newPath"},
      {R"({"op":"file.move","sourcePath":"/a"})", "destinationPath"},
      {R"({"op":"file.move","sourcePath":{},"destinationPath":"/b"})", "sourcePath"},
      {R"({"op":"file.mkdir","path":"/a","recursive":"true"})", "recursive"},
      {R"({"op":"file.list","path":"/a","includeHidden":1})", "includeHidden"},
      {R"({"op":"file.list","path":"/a","recursive":[]})", "recursive"},
  };
  for (auto [text, field] : cases) {
    auto [message, named] = Refusal(text);
    EXPECT_EQ(named, field) << text << ": " << message;
    EXPECT_NE(message.find(field), std::string::npos) << text << ": " << message;
  }
  EXPECT_EQ(Refusal(R"({"op":"file.read","path":"/a","encoding":"latin1"})").first,
            "field 'encoding' must be one of 'utf-8', 'utf8', 'base64'");
  EXPECT_EQ(Refusal(R"({"op":"file.move","sourcePath":"/a"})").first, "missing field 'destinationPath'");
  EXPECT_EQ(Refusal(R"({"op":"file.list","path":"/a","recursive":"yes"})").first, "field 'recursive' must be a boolean");
}

TEST(OpsTest, WatchOpsNameTheMissingOrMistypedField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"op":"fs.watch"})", "path"},
      {R"({"op":"fs.watch","path":"/a","recursive":"no"})", "recursive"},
      {R"({"op":"fs.watch","path":"/a","include":"*.js"})", "include"},
      {R"({"op":"fs.watch","path":"/a","exclude":[null]})", "exclude"},
      {R"({"op":"fs.watch","path":"/a","events":["create",1]})", "events"},
      {R"({"op":"fs.watch","path":"/a","sessionId":""})", "sessionId"},
      {R"({"op":"fs.check","path":""})", "path"},
      {R"({"op":"fs.check","path":"/a","since":5})", "since"},
      {R"({"op":"fs.check","path":"/a","include":[1]})", "include"},
  };
  for (auto [text, field] : cases) {
    auto [message, named] = Refusal(text);
    EXPECT_EQ(named, field) << text << ": " << message;
  }
  EXPECT_EQ(Refusal(R"({"op":"fs.watch","path":"/a","include":"*.js"})").first,
            "field 'include' must be a list of strings");
}

TEST(OpsTest, FileAndWatchOpsRoundTripEveryField) {
  FileReadOp read;
  read.path = "a.txt";
  read.session_id = "s";
  read.encoding = "base64";
  read.max_bytes = 1 << 20;
  read.raw_data = true;
  auto r = ParseOp<FileReadOp>(ToJson(read));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(ToJson(*r), Json::parse(
      R"({"op":"file.read","path":"a.txt","sessionId":"s","encoding":"base64","maxBytes":1048576,"rawData":true})"));
  FsCheckOp check;
  check.path = "/w";
  check.recursive = false;
  check.include = Strings{"*.ts"};
  check.since = "c1:4";
  auto c = ParseOp<FsCheckOp>(ToJson(check));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->recursive);
  EXPECT_EQ(c->include, Strings{"*.ts"});
  EXPECT_EQ(c->since, "c1:4");
  // Absent or null optionals stay empty; bools keep their defaults; unknown keys are ignored.
  auto w = ParseOp<FileWriteOp>(Json::parse(R"({"op":"file.write","path":"/a","content":null,"contentInData":null,"options":{"x":1}})"));
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_FALSE(w->content.has_value());
  EXPECT_FALSE(w->content_in_data);
  auto l = ParseOp<FileListOp>(Json::parse(R"({"op":"file.list","path":"/a","recursive":true})"));
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->recursive);
  EXPECT_FALSE(l->include_hidden);
}

TEST(OpsTest, UnknownAndMissingOpsAreNamed) {
  for (const char* name : {"file.copy", "fs.unwatch", "FILE.READ", "file.read ", "file."}) {
    auto r = ParseAnyOp(Json{{"op", name}, {"path", "/a"}});
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().message, "unknown op '" + std::string(name) + "'");
    EXPECT_EQ(r.error().context.at("op"), name);
  }
  for (const char* text : {R"({"path":"/a"})", R"({"op":null})", R"({"op":["file.read"]})"}) {
    auto [message, field] = Refusal(text);
    EXPECT_EQ(message, "missing field 'op'") << text;
    EXPECT_EQ(field, "op") << text;
  }
  // A parser of one op refuses every other.
  EXPECT_FALSE(ParseOp<FileDeleteOp>(Json::parse(R"({"op":"file.exists","path":"/a"})")).ok());
  EXPECT_FALSE(ParseOp<FsWatchOp>(Json::parse(R"({"op":"fs.check","path":"/a"})")).ok());
}

TEST(OpsTest, HelloIsAnOpWithoutFields) {
  EXPECT_EQ(ToJson(HelloOp{}), Json::parse(R"({"op":"hello"})"));
  auto r = ParseAnyOp(Json::parse(R"({"op":"hello","fromANewerCoved":1})"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(std::holds_alternative<HelloOp>(*r));
}

TEST(OpsTest, EnvNamesAreVariablesAndValuesStrings) {
  EXPECT_TRUE(ParseOp<ExecOp>(Json{{"op", "exec"}, {"command", "x"}, {"env", {{"_A1", "v"}}}}).ok());
  for (const Json& env : {Json{{"A B", "1"}}, Json{{"1A", "1"}}, Json{{"", "1"}}, Json{{"A", 1}},
                          Json{{"A", std::string("a\0b", 3)}}}) {
    auto r = ParseOp<ExecOp>(Json{{"op", "exec"}, {"command", "x"}, {"env", env}});
    ASSERT_FALSE(r.ok()) << env.dump();
    EXPECT_EQ(r.error().context.at("field"), "env") << env.dump();
  }
}

TEST(OpsTest, OpNameIsTheWireName) {
  EXPECT_EQ(OpName(AnyOp(FileExistsOp{})), "file.exists");
  EXPECT_EQ(OpName(AnyOp(ContextDeleteOp{})), "context.delete");
}

// Values of every JSON type: a hostile agent may send any of them anywhere.
std::vector<Json> AnyValues() {
  return {Json(), Json(true), Json(-3), Json(18446744073709551615ull), Json(2.5), Json("x"), Json::array({1}),
          Json::object({{"a", 1}})};
}

TEST(OpsTest, ReplyReadersAcceptWellFormedReplies) {
  auto out = ParseOutputEvent(Json::parse(R"({"type":"stderr","data":"oops"})"));
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->is_stderr);
  EXPECT_EQ(out->data, "oops");
  auto exec = ParseExecReply(Json::parse(R"({"type":"complete","exitCode":124,"timedOut":true,"durationMs":5})"));
  ASSERT_TRUE(exec.ok());
  EXPECT_EQ(exec->exit_code, 124);
  EXPECT_TRUE(exec->timed_out);
  EXPECT_FALSE(exec->cancelled);
  auto meta = ParseFileMetadata(
      Json::parse(R"({"type":"metadata","mimeType":"text/plain","size":3,"isBinary":false,"encoding":"utf-8"})"));
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->size, 3);
  auto proc = ParseProcessInfo(Json::parse(
      R"({"id":"p","pid":null,"command":"x","status":"error","startTime":"t"})"));
  ASSERT_TRUE(proc.ok()) << proc.error().message;
  EXPECT_FALSE(proc->pid.has_value());
  EXPECT_FALSE(proc->exit_code.has_value());
  auto ctx = ParseContextInfo(Json::parse(
      R"({"id":"c","language":"python","cwd":"/w","status":"ready","executionCount":2,"createdAt":"t","pid":9})"));
  ASSERT_TRUE(ctx.ok());
  EXPECT_EQ(ctx->pid, 9);
  EXPECT_EQ(TypeOf(Json::parse(R"({"type":"chunk"})")), "chunk");
  EXPECT_EQ(TypeOf(Json::parse(R"({"type":1})")), "");
  EXPECT_EQ(TypeOf(Json::array()), "");
}

TEST(OpsTest, ReplyReadersRejectEveryWrongTypeWithoutThrowing) {
  const Json good_exec = {{"exitCode", 0}, {"timedOut", false}};
  const Json good_meta = {{"mimeType", "a"}, {"size", 1}, {"isBinary", false}, {"encoding", "base64"}};
  const Json good_proc = {{"id", "p"}, {"pid", 1}, {"command", "c"}, {"status", "running"}, {"startTime", "t"}};
  const Json good_start = {{"processId", "p"}, {"pid", 1}};
  const Json good_out = {{"type", "stdout"}, {"data", "d"}};
  auto check = [](const Json& good, auto parse, const char* name) {
    EXPECT_NO_THROW(EXPECT_TRUE(parse(good).ok()) << name);
    for (const Json& v : AnyValues()) EXPECT_NO_THROW(EXPECT_FALSE(parse(v).ok()) << name << " " << v.dump());
    for (const auto& [key, value] : good.items()) {
      for (const Json& v : AnyValues()) {
        if (v.type() == value.type() || v.is_null()) continue;
        if (value.is_number_integer() && v.is_number_integer() && v.get<int64_t>() >= 0) continue;
        Json bad = good;
        bad[key] = v;
        EXPECT_NO_THROW(EXPECT_FALSE(parse(bad).ok()) << name << " " << bad.dump());
      }
    }
  };
  check(good_exec, ParseExecReply, "exec");
  check(good_meta, ParseFileMetadata, "metadata");
  check(good_proc, ParseProcessInfo, "process");
  check(good_start, ParseProcessStartReply, "start");
  check(good_out, ParseOutputEvent, "output");
  // Required fields may not be null or absent.
  EXPECT_FALSE(ParseExecReply(Json::parse(R"({"exitCode":null})")).ok());
  EXPECT_FALSE(ParseExecReply(Json::object()).ok());
  EXPECT_FALSE(ParseFileMetadata(Json::parse(R"({"mimeType":"a","size":-1,"encoding":"utf-8"})")).ok());
  EXPECT_FALSE(ParseOutputEvent(Json::parse(R"({"type":"metadata","data":"d"})")).ok());
}

}  // namespace
}  // namespace cove::agent
