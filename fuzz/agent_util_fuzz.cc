// The pure helpers of cove-agent (src/agent/util.h, and src/base/utf8.h, base64.h,
// shell_quote.h, which it compiles in) that see sandbox-controlled or
// client-controlled text: path resolution, UTF-8 -> JSON escaping of command
// output (whole and streamed), text detection, lenient base64, /etc/passwd and
// /etc/group parsing, shell quoting.
//
// Input: byte 0 picks the helper, byte 1 seeds the chunking, the rest is split
// into NUL-separated fields.
#include <nlohmann/json.hpp>

#include <cctype>
#include <limits>
#include <string>

#include "agent/util.h"
#include "base/base64.h"
#include "base/utf8.h"
#include "base/shell_quote.h"
#include "fuzz.h"

namespace agent = cove::agent;

namespace {

void CheckResolvedPath(const std::string& p) {
  FUZZ_CHECK(!p.empty() && p[0] == '/');
  FUZZ_CHECK(p == "/" || p.back() != '/');
  FUZZ_CHECK(p.find("//") == std::string::npos);
  FUZZ_CHECK(p.find("/./") == std::string::npos && p.find("/../") == std::string::npos);
  FUZZ_CHECK(!(p.size() >= 2 && p.compare(p.size() - 2, 2, "/.") == 0));
  FUZZ_CHECK(!(p.size() >= 3 && p.compare(p.size() - 3, 3, "/..") == 0));
}

void Paths(cove::fuzz::Input& in) {
  std::string base = agent::ResolvePath("/", in.Field());
  CheckResolvedPath(base);
  std::string_view rel = in.Field();
  std::string r = agent::ResolvePath(base, rel);
  CheckResolvedPath(r);
  FUZZ_CHECK(agent::ResolvePath("/", r) == r);          // normal form is a fixed point
  FUZZ_CHECK(agent::ResolvePath(base, r) == r);         // absolute paths ignore the base
  if (rel.find('\0') == std::string_view::npos && (rel.empty() || rel[0] != '/'))
    FUZZ_CHECK(agent::ResolvePath("/", base + "/" + std::string(rel)) == r);
  std::string dir = agent::DirName(r), name = agent::BaseName(r);
  if (r == "/") {
    FUZZ_CHECK(name.empty());
  } else {
    FUZZ_CHECK(!name.empty() && name.find('/') == std::string::npos);
    FUZZ_CHECK((dir == "/" ? "" : dir) + "/" + name == r);
  }
  (void)agent::MimeTypeForPath(r);
}

void JsonEscape(cove::fuzz::Input& in, uint32_t seed) {
  std::string_view s = in.Rest();
  std::string whole;
  cove::AppendJsonUtf8(s, &whole);
  FUZZ_CHECK(cove::IsValidUtf8(whole));
  nlohmann::json parsed = nlohmann::json::parse("\"" + whole + "\"", nullptr, false);
  FUZZ_CHECK(parsed.is_string());
  if (cove::IsValidUtf8(s)) FUZZ_CHECK(parsed.get_ref<const std::string&>() == s);

  // Streamed in chunks: same text, whatever the chunk boundaries.
  cove::Utf8JsonStream stream;
  std::string streamed;
  cove::fuzz::Chunker chunker(seed);
  for (size_t i = 0; i < s.size();) {
    size_t n = chunker.Next(s.size() - i);
    stream.Append(s.substr(i, n), &streamed);
    i += n;
  }
  stream.Finish(&streamed);
  FUZZ_CHECK(!stream.has_pending());
  FUZZ_CHECK(streamed == whole);

  size_t prefix = cove::CompleteUtf8Prefix(s);
  FUZZ_CHECK(prefix <= s.size() && s.size() - prefix <= 3);
  if (cove::IsValidUtf8(s)) FUZZ_CHECK(prefix == s.size());
}

void Text(cove::fuzz::Input& in, uint32_t seed) {
  std::string_view s = in.Rest();
  bool text = cove::IsText(s);
  bool utf8 = cove::IsValidUtf8(s);
  FUZZ_CHECK(!text || utf8);
  FUZZ_CHECK(text == (utf8 && s.find('\0') == std::string_view::npos));
  // nlohmann's strict UTF-8 check as the reference, on strings it needs no escapes for.
  if (s.find_first_of(std::string_view("\"\\\0\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                                       "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f", 34)) ==
      std::string_view::npos) {
    bool ref = !nlohmann::json::parse("\"" + std::string(s) + "\"", nullptr, false).is_discarded();
    FUZZ_CHECK(ref == utf8);
  }
  cove::TextDetector det;
  cove::fuzz::Chunker chunker(seed);
  for (size_t i = 0; i < s.size();) {
    size_t n = chunker.Next(s.size() - i);
    det.Feed(s.substr(i, n));
    i += n;
  }
  FUZZ_CHECK(det.Finish() == text);
}

void Base64(cove::fuzz::Input& in) {
  std::string_view s = in.Rest();
  std::optional<std::string> lenient = cove::Base64DecodeLenient(s);
  std::optional<std::string> strict = cove::Base64Decode(s);
  if (strict) {  // what the strict decoder accepts, the lenient one accepts alike
    FUZZ_CHECK(lenient.has_value());
    FUZZ_CHECK(*lenient == *strict);
  }
  if (lenient) FUZZ_CHECK(cove::Base64Decode(cove::Base64Encode(*lenient)) == lenient);
  FUZZ_CHECK(cove::Base64Decode(cove::Base64Encode(s)) == std::string(s));
}

// The decimal value of an id field (digits only; saturated), or nullopt.
std::optional<uint64_t> DecValue(std::string_view f) {
  if (f.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : f) {
    if (c < '0' || c > '9') return std::nullopt;
    v = std::min<uint64_t>(v * 10 + static_cast<uint64_t>(c - '0'), uint64_t{1} << 40);
  }
  return v;
}

std::string_view FieldOf(std::string_view line, int n) {
  for (; n > 0; --n) {
    size_t c = line.find(':');
    if (c == std::string_view::npos) return {};
    line.remove_prefix(c + 1);
  }
  return line.substr(0, line.find(':'));
}

void Passwd(cove::fuzz::Input& in) {
  std::string_view name = in.Field(64);
  std::string_view text = in.Rest();
  if (auto e = agent::FindPasswd(text, name)) {
    FUZZ_CHECK(e->name == name);
    FUZZ_CHECK(e->uid != static_cast<uid_t>(-1) && e->gid != static_cast<gid_t>(-1));
    // The entry is a line of text whose uid field reads as e->uid.
    bool seen = false;
    for (size_t pos = 0; pos <= text.size() && !seen;) {
      size_t nl = text.find('\n', pos);
      std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      // Ids are the fields' decimal values, never truncated, never (id_t)-1,
      // which set*id() reads as "leave unchanged".
      if (FieldOf(line, 0) == name && DecValue(FieldOf(line, 2)) == uint64_t{e->uid} &&
          DecValue(FieldOf(line, 3)) == uint64_t{e->gid})
        seen = true;
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
    }
    FUZZ_CHECK(seen);
  }
  for (gid_t g : agent::FindGroups(text, name)) FUZZ_CHECK(g != static_cast<gid_t>(-1));
}

// Reads a word made of '...' runs, \' escapes and plain characters, as a POSIX
// shell does.
std::optional<std::string> ShellUnquote(std::string_view w) {
  std::string out;
  size_t i = 0;
  while (i < w.size()) {
    if (w[i] == '\'') {
      size_t end = w.find('\'', i + 1);
      if (end == std::string_view::npos) return std::nullopt;
      out.append(w.substr(i + 1, end - i - 1));
      i = end + 1;
    } else if (w[i] == '\\' && i + 1 < w.size()) {
      out.push_back(w[i + 1]);
      i += 2;
    } else if (std::isalnum(static_cast<unsigned char>(w[i])) ||
               std::string_view("_@%+=:,./-").find(w[i]) != std::string_view::npos) {
      out.push_back(w[i++]);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

void Shell(cove::fuzz::Input& in) {
  std::string_view s = in.Field();
  FUZZ_CHECK(ShellUnquote(cove::ShellQuote(s)) == std::string(s));
  if (cove::IsShellName(s)) {
    FUZZ_CHECK(!s.empty() && !(s[0] >= '0' && s[0] <= '9'));
    for (char c : s) FUZZ_CHECK(c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cove::fuzz::Input in(data, size);
  uint8_t mode = in.Byte();
  uint32_t seed = in.Byte();
  switch (mode % 6) {
    case 0: Paths(in); break;
    case 1: JsonEscape(in, seed); break;
    case 2: Text(in, seed); break;
    case 3: Base64(in); break;
    case 4: Passwd(in); break;
    case 5: Shell(in); break;
  }
  return 0;
}
