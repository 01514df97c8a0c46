#include "base/utf8.h"

#include <cstdint>
#include <cstring>

namespace cove {
namespace {

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;

uint64_t Load8(const unsigned char* p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}
// High bit set in each byte of w that is zero (exact where it matters: the
// lowest flagged byte is always a real zero).
uint64_t ZeroBytes(uint64_t w) { return (w - kOnes) & ~w & kHighs; }

// End of the run from s[i] of printable ASCII bytes that JSON copies as they
// are (no control character, '"', '\\' or non-ASCII byte), 8 bytes at a time.
size_t PlainRunEnd(const unsigned char* s, size_t i, size_t n) {
  for (; i + 8 <= n; i += 8) {
    uint64_t w = Load8(s + i);
    // Flags may be imprecise above the first special byte; the byte loop below is exact.
    uint64_t special = (w & kHighs) | ((w - kOnes * 0x20) & ~w & kHighs) | ZeroBytes(w ^ (kOnes * '"')) |
                       ZeroBytes(w ^ (kOnes * '\\'));
    if (special) break;
  }
  while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\') ++i;
  return i;
}

// End of the run from s[i] of ASCII bytes other than NUL, 8 bytes at a time.
size_t AsciiNoNulRunEnd(const unsigned char* s, size_t i, size_t n) {
  for (; i + 8 <= n; i += 8) {
    uint64_t w = Load8(s + i);
    if ((w & kHighs) | ZeroBytes(w)) break;
  }
  while (i < n && s[i] != 0 && s[i] < 0x80) ++i;
  return i;
}

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
    size_t run = PlainRunEnd(s, i, n);
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
    i = AsciiNoNulRunEnd(s, i, n);
    if (i == n) break;
    unsigned char c = s[i];
    if (c == 0) return false;
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

}  // namespace cove
