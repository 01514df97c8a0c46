// Replays files through a fuzz target without libFuzzer (the GCC build and
// CTest): replay_main FILE_OR_DIR... runs every regular file given, or found
// directly in a directory given, through LLVMFuzzerTestOneInput. A property
// violation aborts; an empty corpus directory is an error (a typo in a path
// must not pass silently).
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (::stat(argv[i], &st) != 0) {
      std::fprintf(stderr, "replay: cannot stat %s\n", argv[i]);
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      files.push_back(argv[i]);
      continue;
    }
    DIR* d = ::opendir(argv[i]);
    if (!d) return 2;
    size_t before = files.size();
    while (dirent* e = ::readdir(d)) {
      std::string p = std::string(argv[i]) + "/" + e->d_name;
      if (e->d_name[0] != '.' && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back(p);
    }
    ::closedir(d);
    std::sort(files.begin() + static_cast<long>(before), files.end());
    if (files.size() == before) {
      std::fprintf(stderr, "replay: no inputs in %s\n", argv[i]);
      return 2;
    }
  }
  // Everything is read before the target initializes (it may hide parts of the
  // file system from itself, as image_import does with /tmp).
  std::vector<std::string> inputs(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    if (!ReadFile(files[i], &inputs[i])) {
      std::fprintf(stderr, "replay: cannot read %s\n", files[i].c_str());
      return 2;
    }
  }
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  for (size_t i = 0; i < files.size(); ++i) {
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", files[i].c_str(), inputs[i].size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(inputs[i].data()), inputs[i].size());
  }
  std::printf("replay: %zu inputs passed\n", files.size());
  return 0;
}
