#include "isolation/validate.h"

#include <gtest/gtest.h>

namespace cove::isolation {
namespace {

TEST(ValidateTest, SandboxIds) {
  for (std::string ok : {std::string("a"), std::string("abc-123"), std::string("0"), std::string(63, 'x')})
    EXPECT_TRUE(ValidateSandboxId(ok).ok()) << ok;
  for (std::string bad : {std::string(""), std::string(64, 'x'), std::string("-a"), std::string("A"),
                          std::string("a.b"), std::string("a/b"), std::string(".."), std::string("a\0b", 3)})
    EXPECT_FALSE(ValidateSandboxId(bad).ok()) << bad;
}

TEST(ValidateTest, AbsolutePaths) {
  EXPECT_TRUE(ValidateAbsolutePath("/usr").ok());
  EXPECT_TRUE(ValidateAbsolutePath("/a/b/").ok());
  EXPECT_FALSE(ValidateAbsolutePath("usr").ok());
  EXPECT_FALSE(ValidateAbsolutePath("/a/../b").ok());
  EXPECT_FALSE(ValidateAbsolutePath("/a/./b").ok());
  EXPECT_FALSE(ValidateAbsolutePath("/..").ok());
  EXPECT_FALSE(ValidateAbsolutePath("").ok());
}

TEST(ValidateTest, Spec) {
  SandboxSpec s;
  s.id = "x";
  s.host_id_base = 1 << 20;
  s.sandbox_dir = "/var/lib/cove/layers/x";
  s.image.lower_dirs = {"/var/lib/cove/images/default"};
  s.argv = {"/bin/true"};
  EXPECT_TRUE(ValidateSpec(s).ok());
  auto bad = s;
  bad.host_id_base = 0;
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.host_id_base = 0xFFFF0000u;
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.argv.clear();
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.image.host_dirs.push_back({"/usr", "/"});
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.image.host_dirs.push_back({"/usr", "/../usr"});
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.read_only_binds.push_back({"/opt/runners", "/"});
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.read_only_binds.push_back({"relative", "/opt/cove"});
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.image.host_dirs.assign(kMaxHostMounts, {"/usr", "/usr"});
  bad.read_only_binds.push_back({"/opt/runners", "/opt/cove"});
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.image.lower_dirs.clear();
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.image.lower_dirs.assign(kMaxLowerDirs + 1, "/var/lib/cove/images/default");
  EXPECT_FALSE(ValidateSpec(bad).ok());
  bad = s;
  bad.image.lower_dirs.assign(kMaxLowerDirs, "/var/lib/cove/images/default");
  EXPECT_TRUE(ValidateSpec(bad).ok());
  bad = s;
  bad.env = {"NOEQUALS"};
  EXPECT_FALSE(ValidateSpec(bad).ok());
}

}  // namespace
}  // namespace cove::isolation
