#include "agent/util.h"

#include <charconv>
#include <cstring>
#include <limits>

namespace cove::agent {
namespace {

// Classifies the sequence starting with a non-ASCII byte at s[i].
// Returns the number of bytes it spans; *valid says whether they form one
// valid character (else they are a maximal invalid subpart, one U+FFFD);
// *incomplete says the input ended while the sequence could still be valid.
size_t ClassifySeq(const unsigned char* s, size_t n, size_t i, bool* valid, bool* incomplete) {
  *valid = false;
  *incomplete = false;
  unsigned char c = s[i];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 1;  // stray continuation byte, C0/C1, F5..FF
  }
  size_t k = 1;
  for (; k <= need; ++k) {
    if (i + k >= n) {
      *incomplete = true;
      return k;
    }
    unsigned char b = s[i + k];
    bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return k;  // the bytes before b are the maximal subpart
  }
  *valid = true;
  return need + 1;
}

constexpr char kHex[] = "0123456789abcdef";

// Core of AppendJsonUtf8. With `carry`, an incomplete tail is stored there
// instead of being replaced.
void AppendJsonImpl(std::string_view sv, std::string* out, std::string* carry) {
  auto s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size();
  out->reserve(out->size() + n + n / 8 + 16);
  size_t i = 0;
  while (i < n) {
    // Fast path: a run of bytes that need no escaping.
    size_t run = i;
    while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') ++run;
    if (run > i) {
      out->append(sv.data() + i, run - i);
      i = run;
      if (i == n) break;
    }
    unsigned char c = s[i];
    if (c < 0x80) {
      switch (c) {
        case '"': out->append("\\\""); break;
        case '\\': out->append("\\\\"); break;
        case '\n': out->append("\\n"); break;
        case '\r': out->append("\\r"); break;
        case '\t': out->append("\\t"); break;
        case '\b': out->append("\\b"); break;
        case '\f': out->append("\\f"); break;
        default: {
          char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          out->append(u, 6);
        }
      }
      ++i;
      continue;
    }
    bool valid, incomplete;
    size_t len = ClassifySeq(s, n, i, &valid, &incomplete);
    if (valid) {
      out->append(sv.data() + i, len);
    } else if (incomplete && carry) {
      carry->assign(sv.data() + i, n - i);
      return;
    } else {
      out->append("\xEF\xBF\xBD");
    }
    i += len;
  }
}

}  // namespace

void AppendJsonUtf8(std::string_view s, std::string* out) { AppendJsonImpl(s, out, nullptr); }

size_t CompleteUtf8Prefix(std::string_view sv) {
  auto s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size();
  // Only the last 3 bytes can start an incomplete sequence.
  size_t start = n > 3 ? n - 3 : 0;
  for (size_t i = start; i < n; ++i) {
    if (s[i] < 0x80) continue;
    if (s[i] >= 0x80 && s[i] <= 0xBF) continue;  // continuation: part of an earlier sequence
    bool valid, incomplete;
    size_t len = ClassifySeq(s, n, i, &valid, &incomplete);
    if (incomplete) return i;
    i += len - 1;
  }
  return n;
}

void Utf8JsonStream::Append(std::string_view chunk, std::string* out) {
  if (!carry_.empty()) {
    // Rare: a character was split between reads; decode carry + chunk whole.
    std::string joined = std::move(carry_);
    carry_.clear();
    joined.append(chunk);
    AppendJsonImpl(joined, out, &carry_);
    return;
  }
  AppendJsonImpl(chunk, out, &carry_);
}

void Utf8JsonStream::Finish(std::string* out) {
  if (carry_.empty()) return;
  std::string c = std::move(carry_);
  carry_.clear();
  AppendJsonImpl(c, out, nullptr);
}

namespace {
// Checks s (with possible incomplete tail when !final); returns false on
// invalid UTF-8 or NUL. *tail gets the incomplete tail length.
bool CheckText(std::string_view sv, bool final, size_t* tail) {
  auto s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size();
  *tail = 0;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    bool valid, incomplete;
    size_t len = ClassifySeq(s, n, i, &valid, &incomplete);
    if (!valid) {
      if (incomplete && !final) {
        *tail = n - i;
        return true;
      }
      return false;
    }
    i += len;
  }
  return true;
}
}  // namespace

bool IsValidUtf8(std::string_view sv) {
  auto s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size(), i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    bool valid, incomplete;
    size_t len = ClassifySeq(s, n, i, &valid, &incomplete);
    if (!valid) return false;
    i += len;
  }
  return true;
}

bool IsText(std::string_view s) {
  size_t tail;
  return CheckText(s, true, &tail);
}

void TextDetector::Feed(std::string_view block) {
  if (binary_) return;
  size_t tail;
  bool ok;
  if (!carry_.empty()) {
    std::string joined = carry_;
    joined.append(block);
    ok = CheckText(joined, false, &tail);
    carry_ = ok ? joined.substr(joined.size() - tail) : std::string();
  } else {
    ok = CheckText(block, false, &tail);
    carry_.assign(block.substr(block.size() - tail));
  }
  if (!ok) binary_ = true;
}

bool TextDetector::Finish() {
  if (!carry_.empty()) binary_ = true;
  carry_.clear();
  return !binary_;
}

bool IsShellName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

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

std::string Base64Encode(std::string_view in) {
  static const char kAlpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  auto s = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size(), i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = uint32_t{s[i]} << 16 | uint32_t{s[i + 1]} << 8 | s[i + 2];
    char b[4] = {kAlpha[v >> 18], kAlpha[(v >> 12) & 63], kAlpha[(v >> 6) & 63], kAlpha[v & 63]};
    out.append(b, 4);
  }
  if (n - i == 1) {
    uint32_t v = uint32_t{s[i]} << 16;
    char b[4] = {kAlpha[v >> 18], kAlpha[(v >> 12) & 63], '=', '='};
    out.append(b, 4);
  } else if (n - i == 2) {
    uint32_t v = uint32_t{s[i]} << 16 | uint32_t{s[i + 1]} << 8;
    char b[4] = {kAlpha[v >> 18], kAlpha[(v >> 12) & 63], kAlpha[(v >> 6) & 63], '='};
    out.append(b, 4);
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  int pad = 0;
  size_t count = 0;  // alphabet characters seen
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) return std::nullopt;  // data after padding
    int v = val(c);
    if (v < 0) return std::nullopt;
    ++count;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (count % 4 == 1 || pad > 2) return std::nullopt;
  if (pad > 0 && (count + pad) % 4 != 0) return std::nullopt;
  return out;
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
