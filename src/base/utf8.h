// UTF-8 validation and repair, and JSON string escaping of UTF-8 text.
// Pure functions over bytes; no allocation beyond the output strings.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cove {

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

}  // namespace cove
