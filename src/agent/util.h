// Pure helpers of cove-agent: UTF-8 and JSON string encoding, shell quoting,
// path resolution, file mode strings, base64, MIME types, /etc/passwd.
// No I/O except ParsePasswd/ParseGroups (which take file contents), no globals.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cove::agent {

// Appends `s` as the inside of a JSON string (no quotes) to `out`: control
// characters, '"' and '\' escaped, valid UTF-8 copied, every maximal invalid
// subsequence replaced by U+FFFD. The output is always valid UTF-8 and JSON.
void AppendJsonUtf8(std::string_view s, std::string* out);

// Length of the longest prefix of `s` that does not end inside a UTF-8
// sequence that could still be completed by more bytes. Bytes after it
// (at most 3) should be carried over to the next chunk.
size_t CompleteUtf8Prefix(std::string_view s);

// Streaming version of AppendJsonUtf8 for output that arrives in chunks:
// a multi-byte sequence split across chunks is decoded whole.
class Utf8JsonStream {
 public:
  // Appends the JSON-escaped text of `chunk` (minus an incomplete tail, which
  // is kept for the next call) to `out`.
  void Append(std::string_view chunk, std::string* out);
  // Flushes a kept incomplete tail (as U+FFFD).
  void Finish(std::string* out);
  bool has_pending() const { return !carry_.empty(); }

 private:
  std::string carry_;
};

// Whether `s` is entirely valid UTF-8 (NUL allowed).
bool IsValidUtf8(std::string_view s);
// Whether `s` is entirely valid UTF-8 with no NUL byte ("text").
bool IsText(std::string_view s);

// Incremental IsText over a file read in blocks.
class TextDetector {
 public:
  void Feed(std::string_view block);
  // Call after the last block. True if everything fed is text.
  bool Finish();
  bool binary() const { return binary_; }

 private:
  std::string carry_;
  bool binary_ = false;
};

// A valid shell variable name ([A-Za-z_][A-Za-z0-9_]*).
bool IsShellName(std::string_view s);

// Lexically normalises `path` (absolute, or relative to the absolute `base`):
// collapses "//", "." and "..", never climbs above "/". No symlinks resolved.
std::string ResolvePath(std::string_view base, std::string_view path);
// The directory part of an absolute normalised path ("/" for "/x").
std::string DirName(std::string_view path);
// The last component ("" for "/").
std::string BaseName(std::string_view path);

// "rwxr-xr-x" from the permission bits of `mode`.
std::string ModeString(mode_t mode);

std::string Base64Encode(std::string_view in);
// Accepts the standard alphabet with or without padding; whitespace ignored.
std::optional<std::string> Base64Decode(std::string_view in);

// MIME type by file extension; "" when the extension is not known.
std::string MimeTypeForPath(std::string_view path);

struct PasswdEntry {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
};
// Finds `name` in the text of an /etc/passwd file.
std::optional<PasswdEntry> FindPasswd(std::string_view passwd, std::string_view name);
// Supplementary groups of `user` from the text of an /etc/group file.
std::vector<gid_t> FindGroups(std::string_view group, std::string_view user);

}  // namespace cove::agent
