// LayerStore: the per-sandbox writable layers (overlay upper/work dirs) with
// a disk quota each.
//
// Layers live in <state>/layers, on one of two quota mechanisms:
//   btrfs:   each sandbox dir is a subvolume with a qgroup limit (referenced
//            bytes); removal is one ioctl. Used if <state>/layers is btrfs,
//            and for a created image when the kernel has btrfs.
//   project: ext4/XFS project quotas: the sandbox dir gets project id =
//            host_id_base (unique per sandbox) with inheritance and a hard
//            block and inode limit. Used if the state fs enforces them.
// If neither is available where <state>/layers is, a sparse image
// <state>/layers.img is created once (mkfs.btrfs, else mkfs.ext4 -O
// quota,project) and loop-mounted there (the loop device auto-detaches when
// unmounted). Writes beyond a limit fail with EDQUOT inside the sandbox.
//
// The mount stays up for the life of the host (coved restarts reuse it).
// Thread-safe for distinct ids.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::isolation {

struct LayerStoreOptions {
  uint64_t image_bytes = 64ull << 30;  // size of a newly created sparse layers.img
  bool force_image = false;            // use layers.img even if the state fs has quotas
};

enum class QuotaBackend { kNone, kBtrfs, kProject };

struct LayerSeed {
  // Writes the default image's per-sandbox files into upper/: /workspace,
  // /tmp, /var/tmp, /run, /root, /home/user and a clean /etc (passwd, group,
  // hosts, hostname, resolv.conf, nsswitch.conf), owned by the sandbox's ids.
  bool default_layout = true;
  std::string hostname;                // for /etc/hosts and /etc/hostname (the sandbox id)
  std::string nameserver = "127.0.0.1";  // for /etc/resolv.conf
  // coved's interception CA (PEM) and a CA bundle (the host's plus that CA):
  // written, for every image, to /etc/cove/ca.crt and /etc/cove/ca-bundle.crt,
  // and for the default layout also as /etc/ssl/certs/ca-certificates.crt.
  // Empty: none.
  std::string trusted_ca_pem;
  std::string ca_bundle_pem;
};

class LayerStore {
 public:
  LayerStore(LayerStore&&) = default;
  LayerStore& operator=(LayerStore&&) = default;

  static Result<LayerStore> Open(const std::string& state_dir, const LayerStoreOptions& options = {});

  // Creates <layers>/<id>/{upper,work,root,lower} (upper and work owned by
  // host_id_base) with a quota of disk_bytes (0 = none) and returns the dir,
  // which is the SandboxSpec::sandbox_dir. kAlreadyExists if present. Nothing
  // is left on failure.
  Result<std::string> CreateLayer(const std::string& id, uint64_t disk_bytes, uid_t host_id_base,
                                  const LayerSeed& seed) const;
  // Deletes the layer and its quota. A missing layer is OK.
  Status RemoveLayer(const std::string& id) const;
  // Ids that have a layer dir (for cleanup of leftovers).
  Result<std::vector<std::string>> List() const;
  // Bytes charged to the layer's project (0 without quotas).
  Result<uint64_t> UsageBytes(const std::string& id) const;

  std::string LayerDir(const std::string& id) const { return layers_dir_ + "/" + id; }
  const std::string& layers_dir() const { return layers_dir_; }
  QuotaBackend backend() const { return backend_; }
  bool quota_enforced() const { return backend_ != QuotaBackend::kNone; }
  bool uses_image() const { return uses_image_; }

  // Unmounts the layer file system (tests and uninstall; coved keeps it).
  Status Unmount();

 private:
  LayerStore() = default;
  void CollectStaleQgroups() const;  // btrfs: qgroups of subvolumes deleted earlier
  std::string layers_dir_;
  UniqueFd fs_fd_;        // open on layers_dir_: ioctl / quotactl_fd target
  QuotaBackend backend_ = QuotaBackend::kNone;
  bool uses_image_ = false;
};

}  // namespace cove::isolation
