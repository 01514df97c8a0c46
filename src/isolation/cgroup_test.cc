#include "isolation/cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "isolation/validate.h"
#include "sys/fs.h"
#include "sys/io.h"

namespace cove::isolation {
namespace {

constexpr const char* kSelfV1 =
    "12:rdma:/\n9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/abc\n"
    "3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";
constexpr const char* kMountinfoV1 =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";

TEST(CgroupLayoutTest, V1PathsFollowOwnCgroupPerHierarchy) {
  auto l = ParseCgroupLayout(kSelfV1, kMountinfoV1, false);
  ASSERT_TRUE(l.ok()) << l.error().ToString();
  EXPECT_EQ(l->version, CgroupVersion::kV1);
  std::map<std::string, std::string> byc;
  for (const auto& h : l->hierarchies) {
    if (h.unified) byc["unified"] = h.parent;
    for (const auto& c : h.controllers) byc[c] = h.parent;
  }
  EXPECT_EQ(byc["cpu"], "/sys/fs/cgroup/cpu");
  EXPECT_EQ(byc["memory"], "/sys/fs/cgroup/memory/process_api/abc");  // nested daemon
  EXPECT_EQ(byc["pids"], "/sys/fs/cgroup/pids");
  EXPECT_EQ(byc["unified"], "/sys/fs/cgroup/unified");
  // cgroup2 beside v1 gives usage and kill: no cpuacct, no freezer hierarchies.
  EXPECT_EQ(byc.count("cpuacct"), 0u);
  EXPECT_EQ(byc.count("freezer"), 0u);
  EXPECT_EQ(l->hierarchies.size(), 4u);
  EXPECT_EQ(l->unified_mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(l->unified_options, "nsdelegate");
}

TEST(CgroupLayoutTest, V1WithoutCgroup2UsesCpuacctAndFreezer) {
  std::string mi = kMountinfoV1;
  mi = mi.substr(0, mi.find("41 31 0:38"));
  auto l = ParseCgroupLayout(kSelfV1, mi, false);
  ASSERT_TRUE(l.ok()) << l.error().ToString();
  std::vector<std::string> all;
  for (const auto& h : l->hierarchies) {
    EXPECT_FALSE(h.unified);
    all.insert(all.end(), h.controllers.begin(), h.controllers.end());
  }
  EXPECT_EQ(all, (std::vector<std::string>{"cpu", "cpuacct", "memory", "pids", "freezer"}));
}

TEST(CgroupLayoutTest, V1CoMountedCpuCpuacctIsOneHierarchy) {
  std::string self = "4:memory:/m\n3:pids:/p\n2:cpu,cpuacct:/c\n";
  std::string mi =
      "1 0 0:1 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "2 0 0:2 / /cg/memory rw - cgroup cgroup rw,memory\n"
      "3 0 0:3 /sub /cg/pids rw - cgroup cgroup rw,pids\n";
  auto l = ParseCgroupLayout(self, mi, false);
  ASSERT_TRUE(l.ok()) << l.error().ToString();
  ASSERT_EQ(l->hierarchies.size(), 3u);
  EXPECT_EQ(l->hierarchies[0].parent, "/cg/cpu,cpuacct/c");
  EXPECT_EQ(l->hierarchies[0].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(l->hierarchies[1].parent, "/cg/memory/m");
  EXPECT_EQ(l->hierarchies[2].parent, "/cg/pids/p");  // own path relative to mount root "/sub"? kept
}

TEST(CgroupLayoutTest, V1MissingMemoryIsAnError) {
  std::string self = "2:cpu,cpuacct:/\n3:pids:/\n";
  std::string mi =
      "1 0 0:1 / /cg/cpu rw - cgroup cgroup rw,cpu,cpuacct\n"
      "3 0 0:3 / /cg/pids rw - cgroup cgroup rw,pids\n";
  EXPECT_FALSE(ParseCgroupLayout(self, mi, false).ok());
}

TEST(CgroupLayoutTest, V2WhenRootHasControllers) {
  std::string self = "0::/system.slice/coved.service\n";
  std::string mi = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
  auto l = ParseCgroupLayout(self, mi, true);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->version, CgroupVersion::kV2);
  ASSERT_EQ(l->hierarchies.size(), 1u);
  EXPECT_EQ(l->hierarchies[0].parent, "/sys/fs/cgroup/system.slice/coved.service");
  // Without controllers at the root it is not usable as v2.
  EXPECT_FALSE(ParseCgroupLayout(self, mi, false).ok());
}

TEST(CgroupLayoutTest, MountPointEscapes) {
  std::string self = "4:memory:/\n3:pids:/\n2:cpu:/\n1:cpuacct:/\n";
  std::string mi =
      "1 0 0:1 / /a\\040b/cpu rw - cgroup cgroup rw,cpu\n"
      "2 0 0:2 / /a\\040b/cpuacct rw - cgroup cgroup rw,cpuacct\n"
      "3 0 0:3 / /a\\040b/memory rw - cgroup cgroup rw,memory\n"
      "4 0 0:4 / /a\\040b/pids rw - cgroup cgroup rw,pids\n";
  auto l = ParseCgroupLayout(self, mi, false);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->hierarchies[0].parent, "/a b/cpu");
}

TEST(CgroupGroupTest, PerStateDir) {
  EXPECT_EQ(CgroupGroupForState("/var/lib/cove"), "cove");
  EXPECT_EQ(CgroupGroupForState("/var/lib/cove/"), "cove");
  std::string a = CgroupGroupForState("/tmp/e2e-1"), b = CgroupGroupForState("/tmp/e2e-2");
  EXPECT_NE(a, b);
  EXPECT_EQ(a, CgroupGroupForState("/tmp/e2e-1"));
  EXPECT_EQ(a.rfind("cove-", 0), 0u);
  EXPECT_TRUE(ValidateSandboxId(a).ok());
}

TEST(CpuBandwidthTest, ShortPeriodSameFraction) {
  EXPECT_EQ(CpuBandwidthFor(250).quota_us, 2500u);
  EXPECT_EQ(CpuBandwidthFor(250).period_us, 10000u);
  EXPECT_EQ(CpuBandwidthFor(4000).quota_us, 40000u);  // four CPUs
  EXPECT_EQ(CpuBandwidthFor(4000).period_us, 10000u);
  EXPECT_EQ(CpuBandwidthFor(100).quota_us, 1000u);     // the kernel's minimum quota, still 10 ms
  EXPECT_EQ(CpuBandwidthFor(100).period_us, 10000u);
  // Under 0.1 CPU the period stretches so that the quota stays at the 1 ms minimum.
  EXPECT_EQ(CpuBandwidthFor(62).quota_us, 1000u);  // lite
  EXPECT_EQ(CpuBandwidthFor(62).period_us, 16130u);
  EXPECT_EQ(CpuBandwidthFor(10).quota_us, 1000u);
  EXPECT_EQ(CpuBandwidthFor(10).period_us, 100000u);
  EXPECT_EQ(CpuBandwidthFor(1).period_us, 1000000u);  // the kernel's longest period
  EXPECT_EQ(CpuBandwidthFor(0).quota_us, 0u);
}

class FakeV2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cove-cg-test-XXXXXX";
    root_ = mkdtemp(tmpl);
    parent_ = root_ + "/coved.service";
    ASSERT_EQ(mkdir(parent_.c_str(), 0755), 0);
    for (const char* f : {"cgroup.controllers", "cgroup.subtree_control", "cgroup.procs"})
      ASSERT_TRUE(sys::WriteFileAs(parent_ + "/" + f, f == std::string("cgroup.controllers") ? "cpu memory pids\n" : "",
                                   0644, getuid(), getgid()).ok());
    layout_.version = CgroupVersion::kV2;
    layout_.fake_fs = true;
    layout_.hierarchies.push_back({parent_, {}, true});
  }
  void TearDown() override { (void)sys::RemoveTree(root_); }
  std::string Read(const std::string& p) {
    auto r = sys::ReadFile(p);
    return r.ok() ? *r : "<missing>";
  }
  std::string root_, parent_;
  CgroupLayout layout_;
};

TEST_F(FakeV2Test, CreateWritesLimitsAndEnablesControllers) {
  CgroupManager m(layout_);
  ASSERT_TRUE(m.Init().ok());
  EXPECT_EQ(Read(parent_ + "/cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(Read(parent_ + "/cove/cgroup.subtree_control"), "+cpu +memory +pids");
  Limits l;
  l.cpu_millis = 250;
  l.memory_bytes = 256 << 20;
  l.pids = 64;
  auto cg = m.Create("sb-1", l);
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  std::string d = parent_ + "/cove/sb-1";
  ASSERT_EQ(cg->dirs(), std::vector<std::string>{d});
  EXPECT_EQ(Read(d + "/cpu.max"), "2500 10000");  // a quarter CPU in 10 ms periods
  EXPECT_EQ(Read(d + "/cpu.max.burst"), "2500");   // and one quota banked while idle
  EXPECT_EQ(Read(d + "/memory.max"), std::to_string(256 << 20));
  EXPECT_EQ(Read(d + "/memory.swap.max"), "0");
  EXPECT_EQ(Read(d + "/pids.max"), "64");
  EXPECT_EQ(m.Create("sb-1", l).error().code, ErrorCode::kAlreadyExists);

  ASSERT_TRUE(cg->Attach(4242).ok());
  EXPECT_EQ(Read(d + "/cgroup.procs"), "4242");
  ASSERT_TRUE(cg->KillAll().ok());
  EXPECT_EQ(Read(d + "/cgroup.kill"), "1");
  // Killed processes exit unthrottled and without reclaiming at the limit.
  EXPECT_EQ(Read(d + "/cpu.max"), "max");
  EXPECT_EQ(Read(d + "/memory.max"), "max");

  // Usage parsing.
  ASSERT_TRUE(sys::WriteFileAs(d + "/cpu.stat", "usage_usec 1500\nuser_usec 1000\n", 0644, getuid(), getgid()).ok());
  ASSERT_TRUE(sys::WriteFileAs(d + "/memory.current", "123456\n", 0644, getuid(), getgid()).ok());
  ASSERT_TRUE(sys::WriteFileAs(d + "/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n", 0644, getuid(), getgid()).ok());
  ASSERT_TRUE(sys::WriteFileAs(d + "/pids.current", "7\n", 0644, getuid(), getgid()).ok());
  auto u = cg->ReadUsage();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->cpu_usage_ns, 1500000u);
  EXPECT_EQ(u->memory_current_bytes, 123456u);
  EXPECT_EQ(u->oom_kills, 2u);
  EXPECT_EQ(u->pids_current, 7u);
}

TEST_F(FakeV2Test, UnlimitedValuesAndRemoveAndAdopt) {
  CgroupManager m(layout_);
  ASSERT_TRUE(m.Init().ok());
  Limits l{0, 0, 0, 0};
  auto cg = m.Create("sb-2", l);
  ASSERT_TRUE(cg.ok());
  std::string d = parent_ + "/cove/sb-2";
  EXPECT_EQ(Read(d + "/cpu.max"), "max 100000");
  EXPECT_EQ(Read(d + "/memory.max"), "max");
  EXPECT_EQ(Read(d + "/pids.max"), "max");

  auto ids = m.List();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, std::vector<std::string>{"sb-2"});
  auto adopted = m.Adopt("sb-2");
  ASSERT_TRUE(adopted.ok());
  EXPECT_EQ(adopted->dirs(), cg->dirs());
  ASSERT_TRUE(adopted->Remove().ok());
  EXPECT_FALSE(sys::PathExists(d));
  EXPECT_EQ(m.Adopt("sb-2").error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(m.List()->empty());
}

TEST_F(FakeV2Test, EnablesOnlyOfferedControllers) {
  ASSERT_TRUE(sys::WriteFileAs(parent_ + "/cgroup.controllers", "memory pids io\n", 0644, getuid(), getgid()).ok());
  CgroupManager m(layout_);
  ASSERT_TRUE(m.Init().ok());
  EXPECT_EQ(Read(parent_ + "/cgroup.subtree_control"), "+memory +pids");
  ASSERT_TRUE(sys::WriteFileAs(parent_ + "/cgroup.controllers", "io\n", 0644, getuid(), getgid()).ok());
  EXPECT_EQ(CgroupManager(layout_).Init().error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(FakeV2Test, RejectsBadIds) {
  CgroupManager m(layout_);
  ASSERT_TRUE(m.Init().ok());
  for (const char* bad : {"", "../x", "A", "a/b", "-x", "a b"})
    EXPECT_EQ(m.Create(bad, Limits{}).error().code, ErrorCode::kInvalidArgument) << bad;
}

TEST(FakeV1Test, CreateWritesV1Files) {
  char tmpl[] = "/tmp/cove-cg1-test-XXXXXX";
  std::string root = mkdtemp(tmpl);
  CgroupLayout layout;
  layout.version = CgroupVersion::kV1;
  layout.fake_fs = true;
  for (const char* c : {"cpu", "cpuacct", "memory", "pids"}) {
    ASSERT_EQ(mkdir((root + "/" + c).c_str(), 0755), 0);
    layout.hierarchies.push_back({root + "/" + c, {c}, false});
  }
  CgroupManager m(layout);
  ASSERT_TRUE(m.Init().ok());
  Limits l;
  l.cpu_millis = 1500;
  l.memory_bytes = 1 << 30;
  l.pids = 100;
  auto cg = m.Create("x1", l);
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  auto rd = [&](const std::string& p) { return *sys::ReadFile(root + p); };
  EXPECT_EQ(rd("/cpu/cove/x1/cpu.cfs_quota_us"), "15000");
  EXPECT_EQ(rd("/cpu/cove/x1/cpu.cfs_period_us"), "10000");
  EXPECT_EQ(rd("/cpu/cove/x1/cpu.cfs_burst_us"), "15000");
  EXPECT_EQ(rd("/memory/cove/x1/memory.limit_in_bytes"), std::to_string(1 << 30));
  EXPECT_EQ(rd("/memory/cove/x1/memory.memsw.limit_in_bytes"), std::to_string(1 << 30));
  EXPECT_EQ(rd("/pids/cove/x1/pids.max"), "100");
  EXPECT_EQ(cg->clone_into_fd(), -1);
  ASSERT_TRUE(cg->Remove().ok());
  EXPECT_FALSE(sys::PathExists(root + "/memory/cove/x1"));
  (void)sys::RemoveTree(root);
}

}  // namespace
}  // namespace cove::isolation
