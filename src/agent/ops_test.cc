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
