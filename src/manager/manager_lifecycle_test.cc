// The Manager's lifecycle contracts (docs/architecture.md "Life of a sandbox",
// docs/api.md "Native lifecycle" and "Deleting"), driven through its public
// API over a FakeSandboxHost that runs the real cove-agent, unprivileged.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "manager/fake_sandbox_host.h"
#include "manager/manager.h"
#include "manager/store.h"
#include "sys/proc_stat.h"

namespace cove {
namespace {

using namespace std::chrono_literals;
using Op = FakeSandboxHost::Op;
using AgentResult = Result<std::shared_ptr<AgentConnection>>;

template <typename T>
using Outcome = std::shared_ptr<std::optional<T>>;

template <typename T>
Task<void> StoreInto(Task<T> task, Outcome<T> out) {
  out->emplace(co_await std::move(task));
}

// Manager::Agent takes its id and arrival by reference: this keeps them in
// the coroutine frame for as long as the call runs.
Task<AgentResult> AgentOf(Manager* m, std::string id, bool create, std::shared_ptr<Tombstones::Arrival> arrival) {
  co_return co_await m->Agent(id, create, *arrival);
}

// An exec in the agent's default session; its exit code, or -1.
Task<int> ExitCodeOf(std::shared_ptr<AgentConnection> agent, std::string command) {
  Json req = {{"op", "exec"}, {"command", command}};
  auto reply = co_await agent->Request(req, 30s);
  co_return reply.ok() && (*reply)["exitCode"].is_number() ? (*reply)["exitCode"].get<int>() : -1;
}

class ManagerLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cove-lifecycle-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = Store::Open(dir_ + "/cove.db");
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    store_ = std::move(*store);
    host_ = std::make_unique<FakeSandboxHost>(COVE_AGENT_BIN);
    manager_ = std::make_unique<Manager>(io_.get_executor(), store_.get(), host_.get(), 2);
    manager_->PublishTo(&running_);
    ASSERT_TRUE(Await(manager_->Adopt()));
  }

  void TearDown() override {
    if (shards_) shards_->Stop();  // before the manager: connections are closed from here
    host_->Release(Op::kStart);
    host_->Release(Op::kDestroy);
    manager_.reset();
    io_.poll();
    host_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Runs io until done() (or a generous limit: a failure, not a timing assertion).
  template <typename F>
  bool RunUntil(F done) {
    auto limit = std::chrono::steady_clock::now() + 60s;
    while (!done() && std::chrono::steady_clock::now() < limit) io_.run_one_for(50ms);
    return done();
  }

  template <typename T>
  Outcome<T> Spawn(Task<T> task) {
    auto out = std::make_shared<std::optional<T>>();
    asio::co_spawn(io_, StoreInto(std::move(task), out), asio::detached);
    return out;
  }

  template <typename T>
  T Await(Task<T> task) {
    auto out = Spawn(std::move(task));
    if (!RunUntil([&] { return out->has_value(); })) {
      ADD_FAILURE() << "timed out";
      std::abort();  // the coroutine still refers to this test
    }
    return std::move(**out);
  }

  bool Await(Task<void> task) {
    bool done = false;
    asio::co_spawn(io_, std::move(task), [&](std::exception_ptr) { done = true; });
    return RunUntil([&] { return done; });
  }

  Result<SandboxRecord> Create(const std::string& id) {
    CreateRequest req;
    req.id = id;
    return Await(manager_->Create(std::move(req)));
  }

  std::shared_ptr<Tombstones::Arrival> Arrive() { return std::make_shared<Tombstones::Arrival>(manager_->Arrive()); }

  // The get-or-create of the compatible routes, for a request that arrived now.
  AgentResult GetOrCreate(const std::string& id) { return Await(AgentOf(manager_.get(), id, true, Arrive())); }

  Status Delete(const std::string& id) { return Await(manager_->Destroy(id)); }

  // The stored record of id, if any.
  std::optional<SandboxRecord> Stored(const std::string& id) {
    auto all = store_->LoadSandboxes();
    if (!all.ok()) return std::nullopt;
    for (auto& r : *all)
      if (r.id == id) return r;
    return std::nullopt;
  }

  // coved stops: its sandboxes keep running, the id slots it held are free.
  void StopCoved() {
    manager_.reset();
    io_.poll();
    host_->ForgetSlots();
  }
  // coved starts over the same state.
  void StartCoved() {
    manager_ = std::make_unique<Manager>(io_.get_executor(), store_.get(), host_.get(), 2);
    manager_->PublishTo(&running_);
    ASSERT_TRUE(Await(manager_->Adopt()));
  }
  void Restart() {
    StopCoved();
    StartCoved();
  }

  std::string dir_;
  asio::io_context io_;
  // Work on the manager's pool is not io's: io must not stop while it runs.
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::unique_ptr<Store> store_;
  std::unique_ptr<FakeSandboxHost> host_;
  std::unique_ptr<io::Shards> shards_;  // outlives the manager
  RunningSandboxes running_;            // what the front ends see; outlives the manager
  std::unique_ptr<Manager> manager_;
};

bool ProcessGone(int pid) {
  auto stat = sys::ReadProcStat(pid);
  return !stat.ok() || stat->state == 'Z';
}

TEST_F(ManagerLifecycleTest, CreateRunsTheAgentAndPersistsItsPid) {
  auto r = Create("a");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->state, SandboxState::kRunning);
  ASSERT_GT(r->pid, 0);
  EXPECT_FALSE(ProcessGone(r->pid));
  EXPECT_TRUE(host_->held_slots().count(r->slot));
  auto stored = Stored("a");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->state, SandboxState::kRunning);
  EXPECT_EQ(stored->pid, r->pid);
  EXPECT_EQ(stored->start_ticks, r->start_ticks);
  ASSERT_TRUE(manager_->Get("a"));
  EXPECT_EQ(manager_->Get("a")->pid, r->pid);

  auto agent = Await(AgentOf(manager_.get(), "a", false, Arrive()));
  ASSERT_TRUE(agent.ok()) << agent.error().ToString();
  EXPECT_EQ(Await(ExitCodeOf(*agent, "exit 7")), 7) << "a real agent ran a real shell";
  EXPECT_EQ(Create("a").error().code, ErrorCode::kAlreadyExists);
}

TEST_F(ManagerLifecycleTest, GetOrCreateCreatesOnceForConcurrentRequests) {
  auto first = Spawn(AgentOf(manager_.get(), "g", true, Arrive()));
  auto second = Spawn(AgentOf(manager_.get(), "g", true, Arrive()));
  ASSERT_TRUE(RunUntil([&] { return first->has_value() && second->has_value(); }));
  ASSERT_TRUE((*first)->ok()) << (*first)->error().ToString();
  ASSERT_TRUE((*second)->ok()) << (*second)->error().ToString();
  EXPECT_EQ(***first, ***second) << "the second request joined the first one's create";
  auto third = GetOrCreate("g");
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, ***first);
  EXPECT_EQ(host_->calls(Op::kStart), 1);
  ASSERT_TRUE(manager_->Get("g"));
  EXPECT_EQ(manager_->Get("g")->state, SandboxState::kRunning);

  auto plain = Await(AgentOf(manager_.get(), "missing", false, Arrive()));
  EXPECT_EQ(plain.error().code, ErrorCode::kNotFound) << "without create_if_missing nothing is created";
  EXPECT_EQ(host_->calls(Op::kStart), 1);
}

TEST_F(ManagerLifecycleTest, FailedStartLeavesNoRecordAndReleasesItsSlot) {
  host_->FailStarts(MakeError(ErrorCode::kResourceExhausted, "no room for it"));
  auto r = Create("f");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted) << "the sandbox host's error is returned";
  EXPECT_FALSE(manager_->Get("f"));
  EXPECT_TRUE(manager_->List().empty());
  EXPECT_FALSE(Stored("f"));
  EXPECT_TRUE(host_->held_slots().empty());
  EXPECT_TRUE(manager_->Empty());
  auto via_route = GetOrCreate("f");
  EXPECT_EQ(via_route.error().code, ErrorCode::kResourceExhausted);
  EXPECT_FALSE(Stored("f"));
  EXPECT_TRUE(host_->held_slots().empty());

  host_->FailStarts(std::nullopt);
  auto again = Create("f");
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->slot, 0u) << "the failed creates gave their slot back";
}

TEST_F(ManagerLifecycleTest, AgentDeathFailsTheSandboxUntilItIsDeleted) {
  auto r = Create("d");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  auto agent = GetOrCreate("d");
  ASSERT_TRUE(agent.ok());
  ASSERT_EQ(::kill(r->pid, SIGKILL), 0);
  ASSERT_TRUE(RunUntil([&] { return manager_->Get("d") && manager_->Get("d")->state == SandboxState::kFailed; }));
  EXPECT_NE(manager_->Get("d")->failure, "");
  ASSERT_TRUE(Stored("d"));
  EXPECT_EQ(Stored("d")->state, SandboxState::kFailed);
  EXPECT_FALSE(Stored("d")->interrupted_create);

  // Later requests get 502 SANDBOX_FAILED (kFailedPrecondition); get-or-create does not replace it.
  auto later = GetOrCreate("d");
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(Await(AgentOf(manager_.get(), "d", false, Arrive())).error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(Create("d").error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(host_->calls(Op::kStart), 1);
  EXPECT_EQ(Await(ExitCodeOf(*agent, "true")), -1) << "the old connection is closed";

  // The reaper removes what is left; the record and its slot stay until the DELETE.
  ASSERT_TRUE(RunUntil([&] { return host_->destroyed("d") == 1; }));
  EXPECT_TRUE(Stored("d"));
  EXPECT_TRUE(host_->held_slots().count(r->slot));
  ASSERT_TRUE(Delete("d").ok());
  EXPECT_FALSE(manager_->Get("d"));
  ASSERT_TRUE(RunUntil([&] { return !Stored("d"); }));
  ASSERT_TRUE(RunUntil([&] { return host_->held_slots().empty(); }));
}

// What the front ends (egress proxy, DNS, previews) see from any thread: a
// sandbox while it runs, with its policy and ports as they change, and
// nothing once it failed or was deleted; a record handed out earlier stays
// what it was for its holder. Adoption publishes again after a restart.
TEST_F(ManagerLifecycleTest, RunningSandboxesArePublishedForTheFrontEnds) {
  auto r = Create("p");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  auto seen = running_.ById("p");
  ASSERT_NE(seen, nullptr);
  EXPECT_EQ(seen->state, SandboxState::kRunning);
  EXPECT_EQ(seen->pid, r->pid);
  EXPECT_EQ(running_.BySlot(r->slot), seen);
  EXPECT_EQ(seen->egress, nullptr);

  auto policy = std::make_shared<const proxy::EgressPolicy>();
  ASSERT_TRUE(manager_->SetEgress("p", policy).ok());
  ASSERT_TRUE(manager_->SetPorts("p", {PortExposure{8080, "web", "tok", 0}}).ok());
  auto changed = running_.BySlot(r->slot);
  ASSERT_NE(changed, nullptr);
  EXPECT_EQ(changed->egress, policy);
  ASSERT_EQ(changed->ports.size(), 1u);
  EXPECT_EQ(seen->egress, nullptr);  // the earlier copy did not change under its holder
  EXPECT_TRUE(seen->ports.empty());

  ASSERT_TRUE(Create("q").ok());
  ASSERT_TRUE(Delete("q").ok());
  EXPECT_EQ(running_.ById("q"), nullptr);

  Restart();  // "p" is adopted
  auto adopted = running_.ById("p");
  ASSERT_NE(adopted, nullptr);
  EXPECT_EQ(adopted->ports.size(), 1u);

  ASSERT_EQ(::kill(r->pid, SIGKILL), 0);
  ASSERT_TRUE(RunUntil([&] { return running_.ById("p") == nullptr; }));
  // The record is withdrawn first; the agent's close that MarkFailed posts
  // must run while the manager lives (its closure points into the manager).
  io_.poll();
  EXPECT_EQ(manager_->Get("p")->state, SandboxState::kFailed);
  EXPECT_EQ(running_.size(), 0u);
  EXPECT_EQ(changed->id, "p");
}

// With shards, each sandbox's agent connection lives on the shard of its id;
// Agent is called there (as the API's handlers do) and answers it from there.
Task<AgentResult> AgentThere(Manager* m, std::string id, std::shared_ptr<Tombstones::Arrival> arrival) {
  co_return co_await io::RunOn(m->ExecutorOf(id), AgentOf(m, id, true, arrival));
}
Task<int> ExitCodeThere(std::shared_ptr<AgentConnection> agent, std::string command) {
  co_return co_await io::RunOn(agent->executor(), ExitCodeOf(agent, command));
}

TEST_F(ManagerLifecycleTest, ShardedConnectionsLiveOnTheirShardAndAnswerThere) {
  shards_ = std::make_unique<io::Shards>(io_, 3);
  shards_->Start();
  manager_->UseShards(shards_.get());
  std::set<size_t> used;
  std::map<std::string, std::shared_ptr<AgentConnection>> agents;
  for (std::string id : {"s0", "s1", "s2", "s3", "s4", "s5"}) {
    auto agent = Await(AgentThere(manager_.get(), id, Arrive()));
    ASSERT_TRUE(agent.ok()) << agent.error().ToString();
    EXPECT_TRUE((*agent)->executor() == manager_->ExecutorOf(id));
    EXPECT_TRUE(manager_->ExecutorOf(id) == shards_->For(id));
    used.insert(shards_->IndexOf(id));
    EXPECT_EQ(Await(ExitCodeThere(*agent, "exit 3")), 3);
    // Asked again on its shard: the same connection, from the shard's own table.
    auto again = Await(AgentThere(manager_.get(), id, Arrive()));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *agent);
    agents[id] = *agent;
  }
  EXPECT_GE(used.size(), 2u);
  EXPECT_EQ(host_->calls(Op::kStart), 6);

  // A DELETE answers once the connection on its shard is closed.
  ASSERT_TRUE(Delete("s0").ok());
  EXPECT_FALSE(agents["s0"]->alive());
  EXPECT_EQ(Await(ExitCodeThere(agents["s0"], "true")), -1);
  // A request after it creates the id again, with a new connection.
  auto recreated = Await(AgentThere(manager_.get(), "s0", Arrive()));
  ASSERT_TRUE(recreated.ok());
  EXPECT_NE(*recreated, agents["s0"]);

  // An agent that dies on its shard fails its sandbox at home.
  auto pid = manager_->Get("s1")->pid;
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(RunUntil([&] { return manager_->Get("s1") && manager_->Get("s1")->state == SandboxState::kFailed; }));
  auto later = Await(AgentThere(manager_.get(), "s1", Arrive()));
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().code, ErrorCode::kFailedPrecondition);
  for (std::string id : {"s0", "s1", "s2", "s3", "s4", "s5"}) ASSERT_TRUE(Delete(id).ok());
  ASSERT_TRUE(RunUntil([&] { return host_->held_slots().empty(); }));
}

TEST_F(ManagerLifecycleTest, DeleteAnswersWhileDestroyFailsAndTheReaperRetries) {
  auto r = Create("x");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  auto agent = GetOrCreate("x");
  ASSERT_TRUE(agent.ok());
  host_->Hold(Op::kDestroy);  // SandboxHost::Destroy does not return until released
  ASSERT_TRUE(Delete("x").ok());

  EXPECT_FALSE(manager_->Get("x"));
  EXPECT_TRUE(manager_->List().empty());
  ASSERT_TRUE(Stored("x"));
  EXPECT_EQ(Stored("x")->state, SandboxState::kDeleting);
  EXPECT_TRUE(host_->held_slots().count(r->slot)) << "the slot is freed only when nothing is left";
  EXPECT_FALSE(manager_->Empty());
  Json req = {{"op", "exec"}, {"command", "true"}};
  auto call = Await((*agent)->Request(req, 30s));
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.error().code, ErrorCode::kNotFound) << call.error().message;
  EXPECT_TRUE(RunUntil([&] { return ProcessGone(r->pid); })) << "DELETE sent SIGKILL before answering";
  EXPECT_EQ(host_->destroyed("x"), 0);

  host_->FailDestroys(2);
  host_->Release(Op::kDestroy);
  ASSERT_TRUE(RunUntil([&] { return !Stored("x"); }));
  EXPECT_EQ(host_->calls(Op::kDestroy), 3);
  EXPECT_EQ(host_->destroyed("x"), 1);
  EXPECT_EQ(host_->events(),
            (std::vector<std::string>{"start x", "destroy-failed x", "destroy-failed x", "destroy x"}));
  EXPECT_TRUE(host_->held_slots().empty());
  EXPECT_TRUE(manager_->Empty());
}

TEST_F(ManagerLifecycleTest, CreateOfADeletedIdWaitsForItsReaper) {
  ASSERT_TRUE(Create("w").ok());
  host_->FailDestroys(3);
  ASSERT_TRUE(Delete("w").ok());
  auto again = Create("w");
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->state, SandboxState::kRunning);
  EXPECT_EQ(host_->events(), (std::vector<std::string>{"start w", "destroy-failed w", "destroy-failed w",
                                                          "destroy-failed w", "destroy w", "start w"}));
}

TEST_F(ManagerLifecycleTest, RequestThatArrivedBeforeTheDeleteNeverRecreates) {
  ASSERT_TRUE(Create("t").ok());
  auto early = Arrive();
  ASSERT_TRUE(Delete("t").ok());
  auto stale = Await(AgentOf(manager_.get(), "t", true, early));
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::kNotFound);
  EXPECT_NE(stale.error().message.find("was deleted"), std::string::npos) << stale.error().message;
  EXPECT_FALSE(manager_->Get("t"));
  EXPECT_EQ(host_->calls(Op::kStart), 1);

  // One that arrives after the DELETE answered creates it again.
  auto fresh = GetOrCreate("t");
  ASSERT_TRUE(fresh.ok()) << fresh.error().ToString();
  EXPECT_EQ(host_->calls(Op::kStart), 2);
  // Tombstones only stop creating: the early request now finds the running sandbox.
  EXPECT_TRUE(Await(AgentOf(manager_.get(), "t", true, early)).ok());
}

TEST_F(ManagerLifecycleTest, DeleteOfAnUnknownIdBuriesItToo) {
  auto early = Arrive();
  ASSERT_TRUE(Delete("u").ok());
  EXPECT_EQ(Await(AgentOf(manager_.get(), "u", true, early)).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(host_->calls(Op::kStart), 0);
  // An explicit create always may.
  EXPECT_TRUE(Create("u").ok());
}

TEST_F(ManagerLifecycleTest, RequestsJoinedToACreateThatIsDeletedGetNotFound) {
  host_->Hold(Op::kStart);
  auto creator = Spawn(AgentOf(manager_.get(), "j", true, Arrive()));
  ASSERT_TRUE(RunUntil([&] { return host_->calls(Op::kStart) == 1; }));
  auto joiner = Spawn(AgentOf(manager_.get(), "j", true, Arrive()));
  auto deleted = Spawn(manager_->Destroy("j"));
  for (int i = 0; i < 20; ++i) io_.poll();  // the DELETE waits for the create in flight
  EXPECT_FALSE(deleted->has_value());
  host_->Release(Op::kStart);
  ASSERT_TRUE(RunUntil([&] { return creator->has_value() && joiner->has_value() && deleted->has_value(); }));
  EXPECT_TRUE((*deleted)->ok());
  ASSERT_FALSE((*creator)->ok());
  EXPECT_EQ((*creator)->error().code, ErrorCode::kNotFound) << (*creator)->error().message;
  ASSERT_FALSE((*joiner)->ok());
  EXPECT_EQ((*joiner)->error().code, ErrorCode::kNotFound) << (*joiner)->error().message;
  EXPECT_FALSE(manager_->Get("j"));
  ASSERT_TRUE(RunUntil([&] { return !Stored("j") && host_->destroyed("j") == 1; }));
  EXPECT_EQ(host_->calls(Op::kStart), 1);
  EXPECT_TRUE(host_->held_slots().empty());
}

TEST_F(ManagerLifecycleTest, RestartAdoptsRunningSandboxesAndFinishesDeletions) {
  auto keep = Create("keep");
  ASSERT_TRUE(keep.ok()) << keep.error().ToString();
  auto gone = Create("gone");
  ASSERT_TRUE(gone.ok()) << gone.error().ToString();
  host_->FailDestroys(1 << 30);
  ASSERT_TRUE(Delete("gone").ok());
  ASSERT_TRUE(RunUntil([&] { return host_->calls(Op::kDestroy) >= 1; }));

  Restart();
  host_->FailDestroys(0);
  auto known = host_->last_known_ids();
  std::sort(known.begin(), known.end());
  EXPECT_EQ(known, (std::vector<std::string>{"gone", "keep"}));
  auto adopted = manager_->Get("keep");
  ASSERT_TRUE(adopted);
  EXPECT_EQ(adopted->state, SandboxState::kRunning);
  EXPECT_EQ(adopted->pid, keep->pid) << "the same agent, not a new one";
  auto agent = Await(AgentOf(manager_.get(), "keep", false, Arrive()));
  ASSERT_TRUE(agent.ok()) << agent.error().ToString();
  EXPECT_EQ(Await(ExitCodeOf(*agent, "exit 3")), 3);

  EXPECT_FALSE(manager_->Get("gone")) << "a deleting record stays hidden";
  ASSERT_TRUE(RunUntil([&] { return !Stored("gone"); }));
  EXPECT_GE(host_->destroyed("gone"), 1);
  EXPECT_EQ(host_->held_slots(), (std::set<uint32_t>{keep->slot}));
  EXPECT_EQ(host_->calls(Op::kStart), 2);
}

TEST_F(ManagerLifecycleTest, RestartFailsSandboxesWhosePidOneIsGone) {
  auto r = Create("dead");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  StopCoved();
  ASSERT_EQ(::kill(r->pid, SIGKILL), 0);  // its agent dies while coved is not running
  ASSERT_TRUE(RunUntil([&] { return ProcessGone(r->pid); }));
  StartCoved();
  auto failed = manager_->Get("dead");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->state, SandboxState::kFailed);
  EXPECT_FALSE(failed->interrupted_create);
  EXPECT_EQ(GetOrCreate("dead").error().code, ErrorCode::kFailedPrecondition) << "not replaced";
  ASSERT_TRUE(RunUntil([&] { return host_->destroyed("dead") == 1; })) << "the reaper cleans up after it";
}

TEST_F(ManagerLifecycleTest, InterruptedCreateIsReplacedByTheNextCreate) {
  for (const char* id : {"ic1", "ic2"}) {
    SandboxRecord r;
    r.id = id;
    r.state = SandboxState::kCreating;  // coved stopped during SandboxHost::Start
    r.slot = id == std::string("ic1") ? 5 : 6;
    ASSERT_TRUE(store_->PutSandbox(r).ok());
  }
  Restart();
  for (std::string id : {"ic1", "ic2"}) {
    auto failed = manager_->Get(id);
    ASSERT_TRUE(failed) << id;
    EXPECT_EQ(failed->state, SandboxState::kFailed);
    EXPECT_TRUE(failed->interrupted_create);
    EXPECT_TRUE(Stored(id)->interrupted_create);
  }
  ASSERT_TRUE(RunUntil([&] { return host_->destroyed("ic1") == 1 && host_->destroyed("ic2") == 1; }));
  EXPECT_EQ(host_->held_slots(), (std::set<uint32_t>{5, 6}));

  auto via_route = GetOrCreate("ic1");  // the get-or-create of the compatible routes
  ASSERT_TRUE(via_route.ok()) << via_route.error().ToString();
  EXPECT_EQ(manager_->Get("ic1")->state, SandboxState::kRunning);
  auto via_post = Create("ic2");  // POST /v1/sandboxes
  ASSERT_TRUE(via_post.ok()) << via_post.error().ToString();
  EXPECT_EQ(via_post->state, SandboxState::kRunning);
  ASSERT_TRUE(RunUntil([&] { return host_->held_slots().size() == 2; })) << "the old slots are released";
  EXPECT_FALSE(host_->held_slots().count(5));
  EXPECT_FALSE(host_->held_slots().count(6));
}

}  // namespace
}  // namespace cove
