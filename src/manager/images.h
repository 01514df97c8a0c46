// Images: the root filesystems sandboxes start from, kept under one directory.
// "default" is built from the host's own /usr (isolation/default_image.h);
// others are imported from a tar archive of a root filesystem.
//
// Threading: List/Exists/Resolve from any thread; Import runs the unpacking on
// a private worker thread and resumes on the caller's executor.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"
#include "isolation/spec.h"
#include "io/asio.h"

namespace cove {

struct ImageInfo {
  std::string name;
  int64_t created_ms = 0;
};

class Images {
 public:
  Images(asio::any_io_executor ex, std::string images_dir);
  ~Images();

  // Builds the default image if needed and loads the list of imported ones.
  Status Init();
  bool Exists(const std::string& name) const;
  std::vector<ImageInfo> List() const;
  Result<isolation::Image> Resolve(const std::string& name) const;
  // Imports the tar archive at tar_path as image `name` ([a-z0-9._-]{1,63}).
  // kAlreadyExists if taken; kInvalidArgument for a bad name or archive.
  Task<Result<ImageInfo>> Import(std::string name, std::string tar_path);

 private:
  asio::any_io_executor ex_;
  std::string dir_;
  asio::thread_pool worker_{1};
  mutable std::mutex mu_;
  std::map<std::string, std::pair<ImageInfo, isolation::Image>> images_;
};

}  // namespace cove
