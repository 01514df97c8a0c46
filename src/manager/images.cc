#include "manager/images.h"

#include <sys/stat.h>

#include <filesystem>

#include "base/log.h"
#include "isolation/default_image.h"
#include "isolation/image_import.h"
#include "io/off_thread.h"

namespace cove {

namespace fs = std::filesystem;

namespace {
int64_t MtimeMs(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000;
}
}  // namespace

Images::Images(asio::any_io_executor ex, std::string images_dir) : ex_(std::move(ex)), dir_(std::move(images_dir)) {}
Images::~Images() { worker_.join(); }

Status Images::Init() {
  auto def = isolation::EnsureDefaultImage(dir_);
  if (!def.ok()) return std::move(def).error();
  std::lock_guard lock(mu_);
  images_["default"] = {ImageInfo{"default", MtimeMs(dir_ + "/default")}, std::move(*def)};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename();
    if (!isolation::ValidateImageName(name).ok() || !e.is_directory()) continue;
    isolation::Image img;
    img.lower_dirs = {e.path().string()};
    images_[name] = {ImageInfo{name, MtimeMs(e.path().string())}, std::move(img)};
  }
  return OkStatus();
}

bool Images::Exists(const std::string& name) const {
  std::lock_guard lock(mu_);
  return images_.count(name) > 0;
}

std::vector<ImageInfo> Images::List() const {
  std::lock_guard lock(mu_);
  std::vector<ImageInfo> out;
  for (const auto& [_, v] : images_) out.push_back(v.first);
  return out;
}

Result<isolation::Image> Images::Resolve(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = images_.find(name);
  if (it == images_.end()) return MakeError(ErrorCode::kNotFound, "unknown image " + name);
  return it->second.second;
}

Task<Result<ImageInfo>> Images::Import(std::string name, std::string tar_path) {
  if (Exists(name)) co_return MakeError(ErrorCode::kAlreadyExists, "image " + name + " already exists");
  if (auto s = isolation::ValidateImageName(name); !s.ok()) co_return std::move(s).error();
  auto import = [this, name, tar_path] { return isolation::ImportImage(dir_, name, tar_path); };
  auto result = co_await OffThread<Result<isolation::Image>>(worker_, ex_, import);
  if (!result.ok()) co_return std::move(result).error();
  ImageInfo info{name, MtimeMs(result->lower_dirs.front())};
  std::lock_guard lock(mu_);
  images_[name] = {info, std::move(*result)};
  co_return info;
}

}  // namespace cove
