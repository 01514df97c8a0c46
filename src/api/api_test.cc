#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "api/errors.h"
#include "api/fields.h"
#include "api/route_table.h"

namespace cove::api {
namespace {

TEST(ErrorsTest, StatusTableMatchesReference) {
  EXPECT_EQ(StatusForCode("FILE_NOT_FOUND"), 404);
  EXPECT_EQ(StatusForCode("VALIDATION_FAILED"), 400);
  EXPECT_EQ(StatusForCode("SESSION_ALREADY_EXISTS"), 409);
  EXPECT_EQ(StatusForCode("FILE_TOO_LARGE"), 413);
  EXPECT_EQ(StatusForCode("SESSION_TERMINATED"), 410);
  EXPECT_EQ(StatusForCode("INTERPRETER_NOT_READY"), 503);
  EXPECT_EQ(StatusForCode("SOMETHING_ELSE"), 500);
}

TEST(ErrorsTest, EnvelopeCarriesCodeStatusAndContext) {
  HttpResponse r = ErrorResponse("FILE_NOT_FOUND", "File not found: /x", {{"path", "/x"}});
  EXPECT_EQ(r.status, 404);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["code"], "FILE_NOT_FOUND");
  EXPECT_EQ(j["httpStatus"], 404);
  EXPECT_EQ(j["context"]["path"], "/x");
  EXPECT_TRUE(j["timestamp"].is_string());
}

TEST(ErrorsTest, InternalErrorsMapToApiCodes) {
  EXPECT_EQ(ErrorResponse(MakeError(ErrorCode::kNotFound, "x")).status, 404);
  EXPECT_EQ(ErrorResponse(MakeError(ErrorCode::kAlreadyExists, "x")).status, 409);
  EXPECT_EQ(ErrorResponse(MakeError(ErrorCode::kInvalidArgument, "x")).status, 400);
}

TEST(ErrorsTest, AFailedSandboxIs502SandboxFailed) {
  // What a call in flight gets when the sandbox's agent dies (AgentConnection).
  HttpResponse r = ErrorResponse(MakeError(ErrorCode::kFailedPrecondition, "sandbox s failed: its agent died"));
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(nlohmann::json::parse(r.body)["code"], "SANDBOX_FAILED");
  EXPECT_EQ(StatusForCode("DISK_QUOTA_EXCEEDED"), 507);
}

TEST(FieldsTest, IdsAreBoundedPrintableUtf8) {
  for (const std::string& ok : std::vector<std::string>{"default", "a", std::string(256, 's'), "sessão 1", "日本語", "emoji-\xf0\x9f\x98\x80",
                         "__DISABLE_SESSION__"})
    EXPECT_EQ(IdProblem("sessionId", ok), "") << ok;
  for (const std::string& bad : std::vector<std::string>{std::string(), std::string(257, 's'), std::string("a\0b", 3), "a\nb", "a\tb", "a\x7f",
                          "a\xc2\x85", "a\xe2\x80\xae", "a\xe2\x81\xa6", "a\xe2\x80\x8b", "a\xe2\x80\xa8",
                          "\xef\xbb\xbf", "a\xf3\xa0\x81\x81", "a\xff", "a\xc0\xaf", "a\xed\xa0\x80", "a\xe2\x80",
                          "a\xf4\x90\x80\x80"}) {
    std::string why = IdProblem("sessionId", bad);
    EXPECT_NE(why, "") << bad;
    EXPECT_NE(why.find("'sessionId'"), std::string::npos) << why;
  }
  EXPECT_EQ(ProcessIdProblem("processId", "p-1"), "");
  EXPECT_NE(ProcessIdProblem("processId", "a/b"), "");
  EXPECT_NE(ProcessIdProblem("processId", "a b"), "");
  EXPECT_NE(ProcessIdProblem("processId", std::string(129, 'p')), "");
}

TEST(FieldsTest, IdFieldsAndCommands) {
  Json body = {{"sessionId", "a\u202eb"}, {"empty", ""}, {"ok", "s1"}, {"n", 5}};
  Fields f(body);
  EXPECT_EQ(f.Id("ok"), std::optional<std::string>("s1"));
  EXPECT_EQ(f.Id("empty"), std::optional<std::string>(""));
  EXPECT_EQ(f.Id("absent"), std::nullopt);
  EXPECT_TRUE(f.ok());
  EXPECT_EQ(f.Id("sessionId"), std::nullopt);
  EXPECT_NE(f.problem().find("'sessionId'"), std::string::npos) << f.problem();

  Json cmd = {{"at", std::string(1 << 20, 'x')}, {"over", std::string((1 << 20) + 1, 'x')}, {"nul", std::string("a\0b", 3)}};
  Fields c(cmd);
  EXPECT_EQ(c.Command("at").size(), size_t{1} << 20);
  EXPECT_TRUE(c.ok());
  c.Command("over");
  EXPECT_EQ(c.problem(), "command is 1048577 bytes; the limit is 1048576 bytes");
  Fields n(cmd);
  n.Command("nul");
  EXPECT_NE(n.problem().find("NUL"), std::string::npos);
}

TEST(FieldsTest, ParsesOnlyObjects) {
  Json j;
  EXPECT_EQ(ParseJsonObject("", &j), "");
  EXPECT_TRUE(j.is_object());
  EXPECT_NE(ParseJsonObject("{not json", &j), "");
  EXPECT_NE(ParseJsonObject("[1,2]", &j), "");
  EXPECT_NE(ParseJsonObject(std::string("\x00\xff\xfe", 3), &j), "");
}

TEST(FieldsTest, TakesABodyThatArrivedParsed) {
  HttpRequest req;  // a /ws frame's body: already a value, never text
  req.json_body = Json{{"k", "v"}};
  Json j;
  EXPECT_EQ(ParseJsonObject(req, &j), "");
  EXPECT_EQ(j, (Json{{"k", "v"}}));
  EXPECT_FALSE(req.json_body) << "taken, not copied";
  req.json_body = Json::array({1, 2});
  EXPECT_EQ(ParseJsonObject(req, &j), "request body must be a JSON object");
  HttpRequest text;
  text.body = "{\"a\":1}";
  EXPECT_EQ(ParseJsonObject(text, &j), "");
  EXPECT_EQ(j, (Json{{"a", 1}}));
}

TEST(FieldsTest, KeepsFirstProblem) {
  Json j = {{"path", 5}, {"recursive", "yes"}};
  Fields f(j);
  EXPECT_EQ(f.Str("path", true), "");
  f.Bool("recursive");
  EXPECT_FALSE(f.ok());
  EXPECT_EQ(f.problem(), "field 'path' must be a string");
}

TEST(FieldsTest, RequiredAndRanges) {
  Json j = {{"timeoutMs", -5}, {"env", {{"A", "1"}, {"B", 2}}}};
  Fields f(j);
  f.Str("command", true);
  EXPECT_EQ(f.problem(), "missing required field 'command'");
  Fields g(j);
  EXPECT_FALSE(g.Int("timeoutMs", 1, 100).has_value());
  EXPECT_EQ(g.problem(), "field 'timeoutMs' must be between 1 and 100");
  Fields h(j);
  EXPECT_TRUE(h.StrMap("env").empty());
  EXPECT_EQ(h.problem(), "field 'env.B' must be a string");
}

}  // namespace
}  // namespace cove::api

namespace cove::api {
namespace {

TEST(FieldsTest, EnvNamesAreValidated) {
  Json ok = {{"env", {{"PATH_2", "x"}, {"_a", ""}}}};
  Fields f(ok);
  EXPECT_EQ(f.EnvMap("env").size(), 2u);
  EXPECT_TRUE(f.ok());
  for (std::string bad : std::vector<std::string>{"", "1A", "A=B", "A B", std::string(256, 'A')}) {
    Json j = {{"env", {{bad, "x"}}}};
    Fields g(j);
    EXPECT_TRUE(g.EnvMap("env").empty());
    EXPECT_FALSE(g.ok()) << bad;
  }
  Json nul = {{"env", {{"A", std::string("a\0b", 3)}}}};
  Fields h(nul);
  h.EnvMap("env");
  EXPECT_FALSE(h.ok());
}

}  // namespace
}  // namespace cove::api

namespace cove::api {
namespace {

TEST(FieldsTest, HugeAndFractionalNumbers) {
  for (const char* text : {R"({"t":18461744073709551616})", R"({"t":1e300})", R"({"t":-1e300})",
                           R"({"t":18446744073709551615})"}) {
    Json j = Json::parse(text);
    Fields f(j);
    EXPECT_FALSE(f.Int("t", 1, int64_t{1} << 40).has_value()) << text;
    EXPECT_EQ(f.problem(), "field 't' must be between 1 and 1099511627776") << text;
  }
  Json frac = {{"t", 2.5}};
  Fields g(frac);
  EXPECT_FALSE(g.Int("t", 1, 10).has_value());
  EXPECT_EQ(g.problem(), "field 't' must be an integer");
  Json whole = {{"t", 3.0}};
  Fields h(whole);
  EXPECT_EQ(h.Int("t", 1, 10), 3);
}

TEST(FieldsTest, DeepBodiesAreRefusedBeforeParsing) {
  Json j;
  EXPECT_NE(ParseJsonObject("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", &j), "");
  EXPECT_NE(ParseJsonObject(std::string("{}\0junk", 7), &j), "");
}

TEST(RouteTableTest, APathIsMatchedOnceThenItsMethod) {
  std::vector<Route> routes = {{"POST", "/api/process/start", nullptr}, {"GET", "/api/process/list", nullptr},
                               {"GET", "/api/process/{id}", nullptr},   {"DELETE", "/api/process/{id}", nullptr},
                               {"GET", "/api/process/{id}/logs", nullptr}};
  auto m = MatchRoute(routes, "DELETE", "/api/process/p1");
  ASSERT_EQ(m.route, &routes[3]);
  EXPECT_EQ(m.params, std::vector<std::string>{"p1"});
  m = MatchRoute(routes, "GET", "/api/process/p1/logs");
  ASSERT_EQ(m.route, &routes[4]);
  EXPECT_EQ(m.params, std::vector<std::string>{"p1"});
  // A literal path is not taken for an id with another method: 405, not a kill of process "list".
  m = MatchRoute(routes, "DELETE", "/api/process/list");
  EXPECT_TRUE(m.path_known);
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed, "GET");
  m = MatchRoute(routes, "POST", "/api/process/p1");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed, "GET or DELETE");
  for (const char* unknown : {"/api/process/", "/api/process", "/api/process/p1/", "/api/process/p1/x", "/api/processes/p1",
                              "/", ""}) {
    m = MatchRoute(routes, "GET", unknown);
    EXPECT_FALSE(m.path_known) << unknown;
  }
}

}  // namespace
}  // namespace cove::api
