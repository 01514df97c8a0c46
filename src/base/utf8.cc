#include "base/utf8.h"

#include "base/json_escape.h"

#include <emmintrin.h>
#include <immintrin.h>

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

// The scalar validator: an ASCII fast path 8 bytes at a time, ClassifySeq on
// every other character.
bool ValidUtf8Scalar(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i + 8 <= n && !(Load8(s + i) & kHighs)) i += 8;
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

// The vector validator (AVX2), 32 bytes a step with no branch per character.
// Each byte is checked against the 1-3 bytes before it by three 16-entry
// tables (the high nibble of the previous byte, its low nibble, the high
// nibble of this byte), whose AND has a bit set for each rule the pair breaks;
// a continuation byte after a continuation byte is an error unless the byte 2
// or 3 back starts a 3- or 4-byte sequence, which cancels that bit.
constexpr uint8_t kTooShort = 1 << 0;    // a lead byte, then no continuation
constexpr uint8_t kTooLong = 1 << 1;     // ASCII, then a continuation
constexpr uint8_t kOverlong3 = 1 << 2;   // E0 80..9F
constexpr uint8_t kTooLarge = 1 << 3;    // F4 90..BF, F5..FF 90..BF
constexpr uint8_t kSurrogate = 1 << 4;   // ED A0..BF
constexpr uint8_t kOverlong2 = 1 << 5;   // C0..C1 then a continuation
constexpr uint8_t kTooLarge1000 = 1 << 6;  // F5..FF 80..8F
constexpr uint8_t kOverlong4 = 1 << 6;   // F0 80..8F (the same bit: told apart by the low nibble)
constexpr uint8_t kTwoConts = 1 << 7;    // a continuation, then a continuation
constexpr uint8_t kCarry = kTooShort | kTooLong | kTwoConts;

__attribute__((target("avx2"))) __m256i Table(const uint8_t (&t)[16]) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}

// The 32 bytes of `in` shifted by k (1..3) with the last k bytes of `prev` in front.
template <int k>
__attribute__((target("avx2"))) __m256i Prev(__m256i in, __m256i prev) {
  return _mm256_alignr_epi8(in, _mm256_permute2x128_si256(prev, in, 0x21), 16 - k);
}

struct Avx2Tables {
  __m256i byte1_high, byte1_low, byte2_high, open_max;
};
struct Avx2State {
  __m256i prev, error, open;  // the block before; errors so far; a sequence open at its end
};

__attribute__((target("avx2"))) inline void Avx2Step(__m256i in, const Avx2Tables& k, Avx2State* st) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  if (_mm256_movemask_epi8(in) == 0) {  // all ASCII: only a sequence left open before it is wrong
    st->error = _mm256_or_si256(st->error, st->open);
  } else {
    __m256i prev1 = Prev<1>(in, st->prev);
    __m256i sc = _mm256_and_si256(
        _mm256_and_si256(_mm256_shuffle_epi8(k.byte1_high, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), nibble)),
                         _mm256_shuffle_epi8(k.byte1_low, _mm256_and_si256(prev1, nibble))),
        _mm256_shuffle_epi8(k.byte2_high, _mm256_and_si256(_mm256_srli_epi16(in, 4), nibble)));
    __m256i third = _mm256_subs_epu8(Prev<2>(in, st->prev), _mm256_set1_epi8(static_cast<char>(0xE0 - 0x80)));
    __m256i fourth = _mm256_subs_epu8(Prev<3>(in, st->prev), _mm256_set1_epi8(static_cast<char>(0xF0 - 0x80)));
    __m256i must_continue =
        _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8(static_cast<char>(0x80)));
    st->error = _mm256_or_si256(st->error, _mm256_xor_si256(must_continue, sc));
  }
  st->open = _mm256_subs_epu8(in, k.open_max);
  st->prev = in;
}

__attribute__((target("avx2"))) bool ValidUtf8Avx2(const unsigned char* s, size_t n) {
  static constexpr uint8_t kByte1High[16] = {
      kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong,  // 0xxx: ASCII
      kTwoConts, kTwoConts, kTwoConts, kTwoConts,                                      // 10xx: continuation
      kTooShort | kOverlong2,                                                          // 1100
      kTooShort,                                                                       // 1101
      kTooShort | kOverlong3 | kSurrogate,                                             // 1110
      kTooShort | kTooLarge | kTooLarge1000 | kOverlong4};                             // 1111
  static constexpr uint8_t kByte1Low[16] = {
      kCarry | kOverlong3 | kOverlong2 | kOverlong4,  // ___0000
      kCarry | kOverlong2,                            // ___0001
      kCarry, kCarry,
      kCarry | kTooLarge,                             // ___0100
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000 | kSurrogate,  // ___1101
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000};
  static constexpr uint8_t kByte2High[16] = {
      kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort,  // ASCII
      kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge1000 | kOverlong4,             // 1000
      kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge,                              // 1001
      kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,                              // 1010
      kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,                              // 1011
      kTooShort, kTooShort, kTooShort, kTooShort};                                             // lead bytes
  // A sequence still open at the end of a block: its last byte >= C0, the one before >= E0, or the one before that >= F0.
  static constexpr uint8_t kOpenMax[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                           0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                           0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xEF, 0xDF, 0xBF};
  const Avx2Tables k{Table(kByte1High), Table(kByte1Low), Table(kByte2High),
                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kOpenMax))};
  Avx2State st{_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) Avx2Step(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)), k, &st);
  if (i < n) {  // the tail, padded with NULs (ASCII: a sequence open at the end is then an error)
    alignas(32) unsigned char last[32] = {};
    memcpy(last, s + i, n - i);
    Avx2Step(_mm256_load_si256(reinterpret_cast<const __m256i*>(last)), k, &st);
  }
  __m256i error = _mm256_or_si256(st.error, st.open);
  return _mm256_testz_si256(error, error);
}

bool HasAvx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}

// Appends valid UTF-8 `s` JSON-escaped, 16 bytes a step (SSE2): each block is
// copied whole, then the output is cut at its first byte that needs escaping.
void AppendJsonValid(std::string_view sv, std::string* out) {
  const char* s = sv.data();
  size_t n = sv.size(), i = 0;
  size_t used = out->size();
  out->resize(used + n + n / 8 + 64);
  char* o = out->data() + used;
  char* o_end = out->data() + out->size();
  while (i < n) {
    if (o_end - o < 32) {  // room for a block, then an escape after up to 15 of its bytes
      size_t at = static_cast<size_t>(o - out->data());
      out->resize(out->size() * 2);
      o = out->data() + at;
      o_end = out->data() + out->size();
    }
    if (n - i >= 16) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), v);
      unsigned mask = json_escape::MustEscapeMask(v);
      if (mask == 0) {
        i += 16;
        o += 16;
        continue;
      }
      unsigned k = static_cast<unsigned>(__builtin_ctz(mask));
      i += k;
      o += k;
    } else {
      auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x20 && c != '"' && c != '\\') {
        *o++ = s[i++];
        continue;
      }
    }
    auto c = static_cast<unsigned char>(s[i++]);  // '"', '\\' or a control character
    o[0] = '\\';
    o[1] = json_escape::kLetter[c];
    if (o[1] != 'u') {
      o += 2;
    } else {
      memcpy(o + 2, "00", 2);
      o[4] = kHex[c >> 4];
      o[5] = kHex[c & 15];
      o += 6;
    }
  }
  out->resize(static_cast<size_t>(o - out->data()));
}

// Core of AppendJsonUtf8. With `carry`, an incomplete tail is stored there
// instead of being replaced.
void AppendJsonImpl(std::string_view sv, std::string* out, std::string* carry) {
  // Valid text (the usual case) takes the vector path; the rest is repaired byte by byte.
  size_t whole = carry ? CompleteUtf8Prefix(sv) : sv.size();
  if (IsValidUtf8(sv.substr(0, whole))) {
    AppendJsonValid(sv.substr(0, whole), out);
    if (whole < sv.size()) carry->assign(sv.substr(whole));
    return;
  }
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
  // Text (the usual case) in two vector passes; else the byte loop finds the first fault.
  size_t whole = final ? n : CompleteUtf8Prefix(sv);
  if (!memchr(s, 0, whole) && IsValidUtf8(sv.substr(0, whole))) {
    *tail = n - whole;
    return true;
  }
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
  return HasAvx2() ? ValidUtf8Avx2(s, sv.size()) : ValidUtf8Scalar(s, sv.size());
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
