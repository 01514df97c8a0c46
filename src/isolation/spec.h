// SandboxSpec: everything the kernel set-up of one sandbox needs, as plain data.
// No HTTP, JSON or database types here; manager/ fills it in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cove::isolation {

struct Limits {
  uint32_t cpu_millis = 250;          // CPU quota in thousandths of a CPU (250 = 1/4 vCPU); 0 = none
  uint64_t memory_bytes = 1ull << 30; // 0 = none
  uint64_t pids = 512;                // 0 = none
  uint64_t disk_bytes = 4'000'000'000;  // writable layer; 0 = none
};

// A host directory shown at sandbox_path: in Image::host_dirs, writable there
// (e.g. /usr for the default image), the read-only lower layer of an overlay of
// its own whose writes are copied up into the sandbox's layer
// (<sandbox_dir>/dirs/<name>/upper, under its quota), never into the host
// directory; in SandboxSpec::read_only_binds, bound read-only (cove's own files
// that the sandbox must not change: the code interpreter's runners).
struct HostDir {
  std::string host_path;
  std::string sandbox_path;
};

inline constexpr size_t kMaxLowerDirs = 64;
inline constexpr size_t kMaxHostMounts = 16;  // host dirs and read-only binds together

struct Image {
  // The root's read-only overlay lower layers (directories on the host),
  // topmost first: one for the default and imported images, an image's
  // layers for a layered one (shared by every image that has them).
  std::vector<std::string> lower_dirs;
  std::vector<HostDir> host_dirs;   // each an overlay of its own over the merged root
};

struct SandboxSpec {
  std::string id;                  // [a-z0-9-]{1,63}; also the hostname
  uid_t host_id_base = 0;          // sandbox uid/gid 0..65535 map to base..base+65535
  static constexpr uint32_t kIdRange = 65536;
  Image image;
  std::vector<HostDir> read_only_binds;  // mounted after the image's host dirs
  std::string sandbox_dir;         // host dir owned by coved: upper/, work/, root/ live here
  Limits limits;
  std::string agent_path;          // host path of the binary exec'd as pid 1 (via fd, not path);
                                   // empty: argv[0] is looked up inside the sandbox (cove-jail)
  std::vector<std::string> argv;   // argv of pid 1 (argv[0] included)
  std::vector<std::string> env;    // "K=V" environment of pid 1

  // Added by isolation/ (defaults keep the original meaning):
  std::string cwd = "/";           // working directory of pid 1 inside the sandbox
  bool inherit_stdio = false;      // pid 1 gets the caller's fds 0-2; otherwise /dev/null
  bool die_with_parent = false;    // SIGKILL pid 1 when the launching thread dies (cove-jail);
                                   // coved leaves it off so sandboxes survive a daemon restart
  int netns_fd = -1;               // borrowed; >= 0: join this pre-made network namespace (from
                                   // coved's pool) instead of creating one with only loopback
  std::string nameserver = "127.0.0.1";  // /etc/resolv.conf of the default layout
  std::string trusted_ca_pem;             // coved's CA and a bundle with it: LayerSeed
  std::string ca_bundle_pem;
};

}  // namespace cove::isolation
