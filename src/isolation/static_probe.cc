// A statically linked probe for privileged tests of imported images (which
// have no libc of their own): reports identity and which paths exist, on fd 3.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  FILE* out = fdopen(3, "w");
  if (out == nullptr) return 2;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::fprintf(out, "uid=%d host=%s\n", static_cast<int>(getuid()), host);
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    std::fprintf(out, "%s:%s\n", argv[i], lstat(argv[i], &st) == 0 ? "yes" : "no");
  }
  std::fclose(out);
  return 0;
}
