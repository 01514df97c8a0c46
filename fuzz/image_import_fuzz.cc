// isolation::ImportImage (src/isolation/image_import.h) on an archive file:
// the tarball an API client uploads to POST /v1/images/{name}, unpacked by
// coved as root.
//
// Properties: the import either succeeds with everything inside
// images/<name>, or fails leaving images/ as it was (no .import-* residue);
// nothing is ever created outside images/ (a sibling canary directory stays
// empty and the work directory holds nothing new); an imported tree holds no
// device node.
//
// Run as root, the target first moves into its own user namespace (root in it
// = the first host uid of an id slot leased like a sandbox's, so host files
// owned by root or real users are out of reach) and mount namespace, with
// private tmpfs mounts on /tmp, /var/tmp and /dev/shm: an extraction bug must
// not write to the fuzzing machine. libFuzzer builds refuse to run as root
// without that sandbox, and need their corpus and artifact directories
// outside those three and writable by that unprivileged root (chmod 1777).
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fuzz.h"
#include "isolation/id_range.h"
#include "isolation/image_import.h"
#include "sys/fs.h"
#include "sys/io.h"

namespace {

// Made in the private /tmp, so that child processes of the fuzzer (-merge=1,
// -fork) know they inherited the sandbox.
constexpr const char* kPrivateTmpMarker = "/tmp/cove-fuzz-import-private";

std::string g_work;  // holds images/, outside/ and src.tar only
bool g_private_tmp = false;  // /tmp is our own tmpfs: it must hold g_work only

bool WriteAll(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  return off == data.size();
}

// Enters a new user namespace (ids 0-65535 = a leased host id slot) and mount
// namespace; a helper child in the host namespace writes the id maps.
bool EnterSandbox() {
  // Held for the life of the process, like a sandbox's slot (hint: far above coved's).
  static std::optional<cove::isolation::IdSlotLease> lease;
  auto acquired = cove::isolation::IdSlotLease::Acquire(cove::isolation::kDefaultIdSlotLockDir, 50000);
  if (!acquired.ok()) return false;
  lease.emplace(std::move(*acquired));
  const uid_t base = lease->host_id_base();
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return false;
  pid_t parent = ::getpid();
  pid_t helper = ::fork();
  if (helper < 0) return false;
  if (helper == 0) {
    char b;
    ::close(go[1]);
    if (::read(go[0], &b, 1) != 1) ::_exit(1);
    for (const char* map : {"uid_map", "gid_map"}) {
      std::string path = "/proc/" + std::to_string(parent) + "/" + map;
      std::string line = cove::isolation::IdMapLine(base);
      int fd = ::open(path.c_str(), O_WRONLY);
      if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) ::_exit(1);
      ::close(fd);
    }
    ::_exit(0);
  }
  ::close(go[0]);
  bool unshared = ::unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0;
  (void)!::write(go[1], "g", 1);
  ::close(go[1]);
  int status = 0;
  ::waitpid(helper, &status, 0);
  if (!unshared || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return false;
  if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0) return false;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  for (const char* dir : {"/tmp", "/var/tmp", "/dev/shm"})
    if (::access(dir, F_OK) == 0 && ::mount("fuzz", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777") != 0)
      return false;
  return ::mkdir(kPrivateTmpMarker, 0755) == 0;
}

// True inside a user namespace other than the host's (with the marker: a
// -merge=1 or -fork child of a fuzzer that already entered its sandbox).
bool InChildUserNamespace() {
  std::string map;
  if (auto r = cove::sys::ReadFile("/proc/self/uid_map", 4096); r.ok()) map = *r;
  return map.find("4294967295") == std::string::npos;
}

std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") out.insert(e->d_name);
    ::closedir(d);
  }
  return out;
}

int NoDevices(const char*, const struct stat* st, int, struct FTW*) {
  FUZZ_CHECK(!S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode));
  return 0;
}

#ifdef COVE_LIBFUZZER
// libFuzzer's directories (corpus dirs, -artifact_prefix): they must stay
// visible (not under the private tmpfs mounts) and, for the first corpus dir and
// the artifacts, writable by the namespace's root, an unprivileged host uid.
struct FuzzerDirs {
  std::vector<std::string> read, write;
};

FuzzerDirs DirsFromArgs(int argc, char** argv) {
  FuzzerDirs d;
  bool first = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("-artifact_prefix=", 0) == 0) {
      std::string v = a.substr(17);
      std::string dir = v.empty() || v.back() == '/' ? v : v.substr(0, v.rfind('/') + 1);
      d.write.push_back(dir.empty() ? "." : dir);
    } else if (!a.empty() && a[0] != '-') {
      struct stat st;
      bool is_dir = ::stat(a.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
      (is_dir && first ? d.write : d.read).push_back(a);
      if (is_dir) first = false;
    }
  }
  return d;
}

bool UnderMaskedDir(const std::string& path) {
  char real[PATH_MAX];
  std::string p = ::realpath(path.c_str(), real) ? real : path;
  for (const char* m : {"/tmp", "/var/tmp", "/dev/shm"})
    if (p == m || p.rfind(std::string(m) + "/", 0) == 0) return true;
  return false;
}
#endif

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc;
  (void)argv;
  bool sandboxed = false;
#ifdef COVE_LIBFUZZER
  FuzzerDirs dirs = DirsFromArgs(*argc, *argv);
  for (const auto* list : {&dirs.read, &dirs.write})
    for (const std::string& d : *list)
      if (UnderMaskedDir(d)) {
        std::fprintf(stderr, "image_import: %s is under /tmp, /var/tmp or /dev/shm, which this target hides "
                             "behind private tmpfs mounts; use directories elsewhere (docs/fuzzing.md)\n", d.c_str());
        std::abort();
      }
#endif
  if (InChildUserNamespace() && ::access(kPrivateTmpMarker, F_OK) == 0) {
    sandboxed = true;  // inherited from the parent fuzzer process, with its private /tmp
  } else if (::geteuid() == 0) {
    sandboxed = EnterSandbox();
#ifdef COVE_LIBFUZZER
    if (!sandboxed) {
      std::fprintf(stderr, "image_import: cannot enter a user+mount namespace; refusing to fuzz as host root\n");
      std::abort();
    }
    for (const std::string& d : dirs.write)
      if (::access(d.c_str(), W_OK) != 0) {
        std::fprintf(stderr, "image_import: %s must be writable by this fuzzer's root, an unprivileged host uid "
                             "(chmod 1777 it; docs/fuzzing.md)\n", d.c_str());
        std::abort();
      }
#endif
  }
  char tmpl[] = "/tmp/cove-fuzz-import-XXXXXX";
  FUZZ_CHECK(::mkdtemp(tmpl) != nullptr);
  g_work = tmpl;
  g_private_tmp = sandboxed;
  FUZZ_CHECK(::mkdir((g_work + "/images").c_str(), 0711) == 0);
  FUZZ_CHECK(::mkdir((g_work + "/outside").c_str(), 0755) == 0);
  std::fprintf(stderr, "image_import: working in %s%s\n", tmpl, sandboxed ? " (own user and mount namespace)" : "");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string images = g_work + "/images", src = g_work + "/src.tar";
  FUZZ_CHECK(WriteAll(src, std::string(reinterpret_cast<const char*>(data), size)));
  auto imported = cove::isolation::ImportImage(images, "img", src);

  FUZZ_CHECK(Entries(g_work) == (std::set<std::string>{"images", "outside", "src.tar"}));
  FUZZ_CHECK(Entries(g_work + "/outside").empty());
  if (g_private_tmp)  // our own tmpfs: only work dirs (ours, parent fuzzers') and libFuzzer's merge files
    for (const std::string& e : Entries("/tmp"))
      FUZZ_CHECK(e.rfind("cove-fuzz-import-", 0) == 0 || e.rfind("libFuzzerTemp.", 0) == 0);
  if (imported.ok()) {
    FUZZ_CHECK(imported->lower_dirs == std::vector<std::string>{images + "/img"});
    FUZZ_CHECK(Entries(images) == std::set<std::string>{"img"});
    FUZZ_CHECK(::nftw(imported->lower_dirs.front().c_str(), NoDevices, 16, FTW_PHYS) == 0);
    FUZZ_CHECK(cove::sys::RemoveTree(imported->lower_dirs.front()).ok());
  }
  FUZZ_CHECK(Entries(images).empty());
  return 0;
}
