#include "isolation/validate.h"

#include "isolation/id_range.h"

namespace cove::isolation {

Status ValidateSandboxId(std::string_view id) {
  if (id.empty() || id.size() > 63) return MakeError(ErrorCode::kInvalidArgument, "sandbox id must be 1-63 chars");
  if (id.front() == '-') return MakeError(ErrorCode::kInvalidArgument, "sandbox id must not start with '-'");
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return MakeError(ErrorCode::kInvalidArgument, "sandbox id must match [a-z0-9-]");
  }
  return OkStatus();
}

Status ValidateAbsolutePath(std::string_view p) {
  if (p.empty() || p.front() != '/') return MakeError(ErrorCode::kInvalidArgument, "path must be absolute");
  if (p.find('\0') != std::string_view::npos) return MakeError(ErrorCode::kInvalidArgument, "NUL in path");
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view comp = p.substr(i, j - i);
    if (comp == "." || comp == "..") return MakeError(ErrorCode::kInvalidArgument, "'.' or '..' in path");
    i = j + 1;
  }
  if (p.size() > 1024) return MakeError(ErrorCode::kInvalidArgument, "path too long");
  return OkStatus();
}

Status ValidateSpec(const SandboxSpec& spec) {
  COVE_TRY(ValidateSandboxId(spec.id));
  if (spec.host_id_base == 0 || static_cast<uint64_t>(spec.host_id_base) + SandboxSpec::kIdRange > 0xFFFFFFFFull)
    return MakeError(ErrorCode::kInvalidArgument, "host_id_base must be nonzero and leave room for 65536 ids");
  COVE_TRY(ValidateAbsolutePath(spec.sandbox_dir));
  if (spec.image.lower_dirs.empty() || spec.image.lower_dirs.size() > kMaxLowerDirs)
    return MakeError(ErrorCode::kInvalidArgument, "an image has 1 to " + std::to_string(kMaxLowerDirs) + " lower dirs");
  for (const std::string& l : spec.image.lower_dirs) COVE_TRY(ValidateAbsolutePath(l));
  COVE_TRY(ValidateAbsolutePath(spec.cwd));
  if (!spec.agent_path.empty()) COVE_TRY(ValidateAbsolutePath(spec.agent_path));
  if (spec.argv.empty() || spec.argv[0].empty()) return MakeError(ErrorCode::kInvalidArgument, "argv is empty");
  if (spec.image.host_dirs.size() + spec.read_only_binds.size() > kMaxHostMounts)
    return MakeError(ErrorCode::kInvalidArgument,
                     "at most " + std::to_string(kMaxHostMounts) + " host dirs and binds");
  for (const auto* dirs : {&spec.image.host_dirs, &spec.read_only_binds}) {
    for (const HostDir& d : *dirs) {
      COVE_TRY(ValidateAbsolutePath(d.host_path));
      COVE_TRY(ValidateAbsolutePath(d.sandbox_path));
      if (d.sandbox_path == "/") return MakeError(ErrorCode::kInvalidArgument, "cannot mount a host dir over /");
    }
  }
  for (const auto& e : spec.env)
    if (e.find('=') == std::string::npos) return MakeError(ErrorCode::kInvalidArgument, "env entry without '='");
  return OkStatus();
}

}  // namespace cove::isolation
