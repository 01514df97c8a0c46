#include "agent/util.h"

#include <charconv>
#include <cstring>
#include <limits>

namespace cove::agent {

std::string ResolvePath(std::string_view base, std::string_view path) {
  std::string joined;
  if (!path.empty() && path[0] == '/') {
    joined = path;
  } else {
    joined = base;
    joined.push_back('/');
    joined.append(path);
  }
  std::vector<std::string_view> parts;
  std::string_view rest = joined;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view comp = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(comp);
  }
  std::string out;
  for (auto p : parts) {
    out.push_back('/');
    out.append(p);
  }
  return out.empty() ? "/" : out;
}

std::string DirName(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string ModeString(mode_t mode) {
  static const char* kPerms[] = {"---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx"};
  std::string s;
  s += kPerms[(mode >> 6) & 7];
  s += kPerms[(mode >> 3) & 7];
  s += kPerms[mode & 7];
  return s;
}

std::string MimeTypeForPath(std::string_view path) {
  struct Entry {
    const char* ext;
    const char* type;
  };
  static const Entry kTable[] = {
      {"txt", "text/plain"}, {"text", "text/plain"}, {"log", "text/plain"},
      {"md", "text/markdown"}, {"markdown", "text/markdown"}, {"html", "text/html"},
      {"htm", "text/html"}, {"css", "text/css"}, {"csv", "text/csv"}, {"tsv", "text/tab-separated-values"},
      {"js", "text/javascript"}, {"mjs", "text/javascript"}, {"cjs", "text/javascript"},
      {"jsx", "text/javascript"}, {"ts", "text/x-typescript"}, {"tsx", "text/x-typescript"},
      {"json", "application/json"}, {"jsonl", "application/jsonl"}, {"xml", "text/xml"},
      {"yaml", "text/yaml"}, {"yml", "text/yaml"}, {"toml", "text/x-toml"}, {"ini", "text/plain"},
      {"cfg", "text/plain"}, {"conf", "text/plain"}, {"py", "text/x-python"}, {"rb", "text/x-ruby"},
      {"go", "text/x-go"}, {"rs", "text/x-rust"}, {"java", "text/x-java"}, {"c", "text/x-c"},
      {"h", "text/x-c"}, {"cc", "text/x-c++"}, {"cpp", "text/x-c++"}, {"hpp", "text/x-c++"},
      {"cs", "text/x-csharp"}, {"php", "text/x-php"}, {"sh", "text/x-shellscript"},
      {"bash", "text/x-shellscript"}, {"sql", "text/x-sql"}, {"svg", "image/svg+xml"},
      {"png", "image/png"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"}, {"gif", "image/gif"},
      {"webp", "image/webp"}, {"bmp", "image/bmp"}, {"ico", "image/x-icon"}, {"tif", "image/tiff"},
      {"tiff", "image/tiff"}, {"avif", "image/avif"}, {"pdf", "application/pdf"},
      {"zip", "application/zip"}, {"gz", "application/gzip"}, {"tgz", "application/gzip"},
      {"tar", "application/x-tar"}, {"bz2", "application/x-bzip2"}, {"xz", "application/x-xz"},
      {"zst", "application/zstd"}, {"7z", "application/x-7z-compressed"},
      {"wasm", "application/wasm"}, {"mp3", "audio/mpeg"}, {"wav", "audio/wav"},
      {"ogg", "audio/ogg"}, {"flac", "audio/flac"}, {"mp4", "video/mp4"}, {"webm", "video/webm"},
      {"mov", "video/quicktime"}, {"woff", "font/woff"}, {"woff2", "font/woff2"},
      {"ttf", "font/ttf"}, {"otf", "font/otf"}, {"ipynb", "application/x-ipynb+json"},
      {"so", "application/x-sharedlib"}, {"o", "application/x-object"},
      {"exe", "application/x-msdownload"}, {"bin", "application/octet-stream"},
  };
  std::string base = BaseName(path);
  size_t dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == base.size()) return "";
  std::string ext = base.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (const auto& e : kTable) {
    if (ext == e.ext) return e.type;
  }
  return "";
}

namespace {
std::vector<std::string_view> SplitFields(std::string_view line, char sep) {
  std::vector<std::string_view> f;
  size_t start = 0;
  for (;;) {
    size_t p = line.find(sep, start);
    f.push_back(line.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return f;
}

// A decimal uid/gid that fits T and is not (T)-1, which set*id() reads as
// "leave unchanged" (a session meant to drop to a user would stay root).
template <typename T>
bool ParseId(std::string_view s, T* out) {
  unsigned long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return false;
  if (v >= static_cast<unsigned long>(std::numeric_limits<T>::max())) return false;
  *out = static_cast<T>(v);
  return true;
}

template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    if (!fn(line)) return;
  }
}
}  // namespace

std::optional<PasswdEntry> FindPasswd(std::string_view passwd, std::string_view name) {
  std::optional<PasswdEntry> found;
  ForEachLine(passwd, [&](std::string_view line) {
    auto f = SplitFields(line, ':');
    if (f.size() < 7 || f[0] != name) return true;
    PasswdEntry e;
    e.name = f[0];
    if (!ParseId(f[2], &e.uid) || !ParseId(f[3], &e.gid)) return true;
    e.home = f[5];
    e.shell = f[6];
    found = std::move(e);
    return false;
  });
  return found;
}

std::vector<gid_t> FindGroups(std::string_view group, std::string_view user) {
  std::vector<gid_t> out;
  ForEachLine(group, [&](std::string_view line) {
    auto f = SplitFields(line, ':');
    if (f.size() < 4) return true;
    gid_t gid;
    if (!ParseId(f[2], &gid)) return true;
    for (auto member : SplitFields(f[3], ',')) {
      if (member == user) {
        out.push_back(gid);
        break;
      }
    }
    return true;
  });
  return out;
}

}  // namespace cove::agent
