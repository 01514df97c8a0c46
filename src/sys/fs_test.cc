#include "sys/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "sys/io.h"

namespace cove::sys {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/cove-fs-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

TEST(FsTest, MkdirAllAndRemoveTree) {
  std::string root = TempDir();
  ASSERT_TRUE(MkdirAll(root + "/a/b/c", 0755).ok());
  ASSERT_TRUE(MkdirAll(root + "/a/b/c", 0755).ok());
  ASSERT_TRUE(WriteFileAs(root + "/a/b/c/f", "x", 0600, getuid(), getgid()).ok());
  ASSERT_EQ(symlink("/etc", (root + "/a/link").c_str()), 0);
  ASSERT_EQ(mkdir((root + "/a/locked").c_str(), 0), 0);
  ASSERT_TRUE(RemoveTree(root).ok());
  EXPECT_FALSE(PathExists(root));
  EXPECT_TRUE(PathExists("/etc/passwd"));  // the symlink was not followed
  EXPECT_TRUE(RemoveTree(root).ok());      // missing is fine
}

TEST(FsTest, RemoveTreeHandlesDeepTrees) {
  std::string root = TempDir();
  int fd = open(root.c_str(), O_DIRECTORY);
  for (int i = 0; i < 3000; ++i) {
    ASSERT_EQ(mkdirat(fd, "d", 0755), 0);
    int next = openat(fd, "d", O_DIRECTORY);
    close(fd);
    fd = next;
  }
  close(fd);
  auto s = RemoveTree(root);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_FALSE(PathExists(root));
}

TEST(FsTest, CopyFile) {
  std::string root = TempDir();
  ASSERT_TRUE(WriteFileAs(root + "/a", "hello", 0644, getuid(), getgid()).ok());
  ASSERT_TRUE(CopyFile(root + "/a", root + "/b", 0600).ok());
  auto r = ReadFile(root + "/b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "hello");
  struct stat st;
  ASSERT_EQ(stat((root + "/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(RemoveTree(root).ok());
}

TEST(FsTest, IsMountPoint) {
  auto r = IsMountPoint("/proc");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  r = IsMountPoint("/usr/bin");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
}

}  // namespace
}  // namespace cove::sys
