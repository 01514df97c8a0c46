#include "isolation/image_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "sys/fs.h"
#include "sys/io.h"

namespace cove::isolation {
namespace {

struct Entry {
  std::string name;
  mode_t type = AE_IFREG;
  std::string data;        // file content or symlink/hardlink target
  bool hardlink = false;
};

void WriteTar(const std::string& path, const std::vector<Entry>& entries) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const auto& e : entries) {
    archive_entry* en = archive_entry_new();
    archive_entry_set_pathname(en, e.name.c_str());
    archive_entry_set_filetype(en, e.type);
    archive_entry_set_perm(en, e.type == AE_IFDIR ? 0755 : 0644);
    if (e.hardlink) {
      archive_entry_set_hardlink(en, e.data.c_str());
      archive_entry_set_size(en, 0);
    } else if (e.type == AE_IFLNK) {
      archive_entry_set_symlink(en, e.data.c_str());
    } else if (e.type == AE_IFREG) {
      archive_entry_set_size(en, static_cast<la_int64_t>(e.data.size()));
    } else if (e.type == AE_IFCHR) {
      archive_entry_set_rdevmajor(en, 1);
      archive_entry_set_rdevminor(en, 3);
    }
    ASSERT_EQ(archive_write_header(a, en), ARCHIVE_OK);
    if (e.type == AE_IFREG && !e.hardlink) archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(en);
  }
  archive_write_close(a);
  archive_write_free(a);
}

class ImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cove-import-XXXXXX";
    root_ = mkdtemp(tmpl);
    images_ = root_ + "/images";
  }
  void TearDown() override { (void)sys::RemoveTree(root_); }
  // Entries of images_ (the import must never leave temp dirs behind).
  std::vector<std::string> ImagesEntries() {
    std::vector<std::string> out;
    DIR* d = opendir(images_.c_str());
    if (!d) return out;
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.' || (std::string(e->d_name) != "." && std::string(e->d_name) != "..")) out.push_back(e->d_name);
    closedir(d);
    return out;
  }
  std::string root_, images_;
};

TEST_F(ImportTest, ImportsTarball) {
  std::string tar = root_ + "/ok.tar";
  WriteTar(tar, {{"./", AE_IFDIR},
                 {"./bin", AE_IFDIR},
                 {"./bin/hello", AE_IFREG, "#!/bin/sh\necho hi\n"},
                 {"./bin/sh", AE_IFLNK, "busybox"},
                 {"./bin/again", AE_IFREG, "bin/hello", true},
                 {"etc/", AE_IFDIR},
                 {"etc/os-release", AE_IFREG, "ID=test\n"}});
  auto img = ImportImage(images_, "test-1", tar);
  ASSERT_TRUE(img.ok()) << img.error().ToString();
  EXPECT_EQ(img->lower_dirs, std::vector<std::string>{images_ + "/test-1"});
  EXPECT_TRUE(img->host_dirs.empty());
  EXPECT_EQ(*sys::ReadFile(images_ + "/test-1/bin/hello"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(*sys::ReadFile(images_ + "/test-1/bin/again"), "#!/bin/sh\necho hi\n");
  char buf[64] = {};
  ASSERT_GT(readlink((images_ + "/test-1/bin/sh").c_str(), buf, sizeof buf), 0);
  EXPECT_STREQ(buf, "busybox");
  EXPECT_EQ(ImportImage(images_, "test-1", tar).error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(ImagesEntries(), std::vector<std::string>{"test-1"});
}

TEST_F(ImportTest, RejectsDotDotAndLeavesNothing) {
  std::string tar = root_ + "/evil.tar";
  WriteTar(tar, {{"ok.txt", AE_IFREG, "fine"}, {"../escaped.txt", AE_IFREG, "evil"}});
  auto img = ImportImage(images_, "evil", tar);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(img.error().message.find(".."), std::string::npos) << img.error().message;
  EXPECT_FALSE(sys::PathExists(images_ + "/escaped.txt"));
  EXPECT_FALSE(sys::PathExists(root_ + "/escaped.txt"));
  EXPECT_TRUE(ImagesEntries().empty());
}

TEST_F(ImportTest, RejectsNestedDotDot) {
  std::string tar = root_ + "/evil2.tar";
  WriteTar(tar, {{"a/", AE_IFDIR}, {"a/../../x", AE_IFREG, "evil"}});
  EXPECT_FALSE(ImportImage(images_, "evil2", tar).ok());
  EXPECT_TRUE(ImagesEntries().empty());
}

TEST_F(ImportTest, RejectsAbsolutePaths) {
  std::string tar = root_ + "/abs.tar";
  WriteTar(tar, {{"/tmp/cove-abs-escape", AE_IFREG, "evil"}});
  EXPECT_FALSE(ImportImage(images_, "abs", tar).ok());
  EXPECT_FALSE(sys::PathExists("/tmp/cove-abs-escape"));
  EXPECT_TRUE(ImagesEntries().empty());
}

TEST_F(ImportTest, RejectsDeviceNodes) {
  std::string tar = root_ + "/dev.tar";
  WriteTar(tar, {{"dev/", AE_IFDIR}, {"dev/null", AE_IFCHR}});
  auto img = ImportImage(images_, "dev", tar);
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.error().message.find("device"), std::string::npos);
  EXPECT_TRUE(ImagesEntries().empty());
}

TEST_F(ImportTest, RejectsWritesThroughSymlinks) {
  std::string outside = root_ + "/outside";
  ASSERT_EQ(mkdir(outside.c_str(), 0755), 0);
  std::string tar = root_ + "/link.tar";
  WriteTar(tar, {{"link", AE_IFLNK, outside}, {"link/pwned", AE_IFREG, "evil"}});
  EXPECT_FALSE(ImportImage(images_, "link", tar).ok());
  EXPECT_FALSE(sys::PathExists(outside + "/pwned"));
  EXPECT_TRUE(ImagesEntries().empty());
}

TEST_F(ImportTest, RejectsHardlinkOutside) {
  std::string tar = root_ + "/hl.tar";
  WriteTar(tar, {{"x", AE_IFREG, "../../etc/passwd", true}});
  EXPECT_FALSE(ImportImage(images_, "hl", tar).ok());
  EXPECT_TRUE(ImagesEntries().empty());
}

TEST_F(ImportTest, ImportsDirectory) {
  std::string src = root_ + "/rootfs";
  ASSERT_TRUE(sys::MkdirAll(src + "/usr/bin", 0755).ok());
  ASSERT_TRUE(sys::WriteFileAs(src + "/usr/bin/tool", "x", 0755, 0, 0).ok());
  ASSERT_EQ(symlink("usr/bin", (src + "/bin").c_str()), 0);
  auto img = ImportImage(images_, "dir", src);
  ASSERT_TRUE(img.ok()) << img.error().ToString();
  EXPECT_EQ(*sys::ReadFile(images_ + "/dir/usr/bin/tool"), "x");
  struct stat st;
  ASSERT_EQ(lstat((images_ + "/dir/bin").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(stat((images_ + "/dir/usr/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(ImportTest, BadNames) {
  for (const char* bad : {"", "default", "../x", "A", ".hidden", "a/b"})
    EXPECT_FALSE(ImportImage(images_, bad, "/nonexistent").ok()) << bad;
}

}  // namespace
}  // namespace cove::isolation
