#include "base/base64.h"

#include <array>
#include <cstdint>
#include <cstring>

namespace cove {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Two output characters for every 12-bit value.
constexpr std::array<char, 2 * 4096> MakePairs() {
  std::array<char, 2 * 4096> t{};
  for (int v = 0; v < 4096; ++v) {
    t[2 * v] = kAlphabet[v >> 6];
    t[2 * v + 1] = kAlphabet[v & 63];
  }
  return t;
}
constexpr auto kPairs = MakePairs();

// Each character's 6 bits, shifted into place for its position in a group of
// four; 0xFFFFFFFF (high bit set) for a character outside the alphabet.
constexpr uint32_t kBad = 0xFFFFFFFFu;
constexpr std::array<std::array<uint32_t, 256>, 4> MakeDecode() {
  std::array<std::array<uint32_t, 256>, 4> t{};
  for (auto& row : t)
    for (auto& v : row) v = kBad;
  for (uint32_t i = 0; i < 64; ++i) {
    auto c = static_cast<unsigned char>(kAlphabet[i]);
    t[0][c] = i << 18;
    t[1][c] = i << 12;
    t[2][c] = i << 6;
    t[3][c] = i;
  }
  return t;
}
constexpr auto kDecode = MakeDecode();

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v'; }

}  // namespace

void AppendBase64(std::string_view in, std::string* out) {
  size_t old = out->size();
  out->resize(old + (in.size() + 2) / 3 * 4);
  char* o = out->data() + old;
  auto s = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size(), i = 0;
  for (; i + 3 <= n; i += 3, o += 4) {
    uint32_t v = uint32_t{s[i]} << 16 | uint32_t{s[i + 1]} << 8 | s[i + 2];
    memcpy(o, &kPairs[2 * (v >> 12)], 2);
    memcpy(o + 2, &kPairs[2 * (v & 4095)], 2);
  }
  if (n - i == 1) {
    o[0] = kAlphabet[s[i] >> 2];
    o[1] = kAlphabet[(s[i] & 3) << 4];
    o[2] = o[3] = '=';
  } else if (n - i == 2) {
    o[0] = kAlphabet[s[i] >> 2];
    o[1] = kAlphabet[(s[i] & 3) << 4 | s[i + 1] >> 4];
    o[2] = kAlphabet[(s[i + 1] & 15) << 2];
    o[3] = '=';
  }
}

std::string Base64Encode(std::string_view in) {
  std::string out;
  AppendBase64(in, &out);
  return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad = in[in.size() - 2] == '=' ? 2 : 1;
  std::string out(in.size() / 4 * 3 - pad, '\0');
  auto s = reinterpret_cast<const unsigned char*>(in.data());
  char* o = out.data();
  size_t full = in.empty() ? 0 : in.size() - 4;  // the last group is decoded apart (padding)
  uint32_t bad = 0;
  for (size_t i = 0; i < full; i += 4, o += 3) {
    uint32_t v = kDecode[0][s[i]] | kDecode[1][s[i + 1]] | kDecode[2][s[i + 2]] | kDecode[3][s[i + 3]];
    bad |= v;  // any invalid character sets the high bit
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    o[2] = static_cast<char>(v);
  }
  if (in.empty()) return out;
  const unsigned char* g = s + full;
  uint32_t v = kDecode[0][g[0]] | kDecode[1][g[1]] | (pad == 2 ? 0 : kDecode[2][g[2]]) |
               (pad >= 1 ? 0 : kDecode[3][g[3]]);
  bad |= v;
  if (bad & 0x80000000u) return std::nullopt;  // includes '=' anywhere but the end
  o[0] = static_cast<char>(v >> 16);
  if (pad < 2) o[1] = static_cast<char>(v >> 8);
  if (pad < 1) o[2] = static_cast<char>(v);
  return out;
}

std::optional<std::string> Base64DecodeLenient(std::string_view in) {
  bool clean = in.size() % 4 == 0;
  for (size_t i = 0; clean && i < in.size(); ++i) clean = !IsSpace(in[i]);
  if (clean) return Base64Decode(in);
  std::string compact;
  compact.reserve(in.size() + 3);
  for (char c : in)
    if (!IsSpace(c)) compact.push_back(c);
  if (compact.size() % 4 == 1) return std::nullopt;
  if (compact.size() % 4 != 0 && compact.find('=') == std::string::npos) compact.append(4 - compact.size() % 4, '=');
  return Base64Decode(compact);
}

Status Base64Decoder::Feed(std::string_view in, std::string* out) {
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+' || c == '-') {
      v = 62;
    } else if (c == '/' || c == '_') {
      v = 63;
    } else if (c == '=') {
      // Padding ends a quad: flush what it holds and start the next one.
      if (n_ == 2) out->push_back(char(acc_ >> 4));
      if (n_ == 3) {
        out->push_back(char(acc_ >> 10));
        out->push_back(char((acc_ >> 2) & 0xff));
      }
      if (n_ == 0 || n_ == 1) {
        if (n_ == 1) return MakeError(ErrorCode::kInvalidArgument, "invalid base64 padding");
        continue;  // the second '=' of "xx=="
      }
      acc_ = 0;
      n_ = 0;
      continue;
    } else if (c == '\n' || c == '\r' || c == ' ') {
      continue;
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "invalid base64 data");
    }
    acc_ = (acc_ << 6) | uint32_t(v);
    if (++n_ == 4) {
      out->push_back(char(acc_ >> 16));
      out->push_back(char((acc_ >> 8) & 0xff));
      out->push_back(char(acc_ & 0xff));
      acc_ = 0;
      n_ = 0;
    }
  }
  return OkStatus();
}

Status Base64Decoder::Finish(std::string* out) {
  if (n_ == 1) return MakeError(ErrorCode::kInvalidArgument, "truncated base64 data");
  if (n_ == 2) out->push_back(char(acc_ >> 4));
  if (n_ == 3) {
    out->push_back(char(acc_ >> 10));
    out->push_back(char((acc_ >> 2) & 0xff));
  }
  acc_ = 0;
  n_ = 0;
  return OkStatus();
}

}  // namespace cove
