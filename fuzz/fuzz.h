// Shared helpers of the fuzz targets (fuzz/*_fuzz.cc).
//
// Each target defines LLVMFuzzerTestOneInput. It is linked either with
// libFuzzer (clang, COVE_FUZZ=ON) or with replay_main.cc, which runs the files
// of fuzz/corpus/<target>/ through it as a CTest test. A violated property
// aborts (a crash for libFuzzer, a failed test for CTest).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond)                                                             \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

namespace cove::fuzz {

// Splits fuzzer input into values without the (clang-only) FuzzedDataProvider:
// bytes are taken from the front; when the input runs out, zeros come back.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}

  uint8_t Byte() {
    if (n_ == 0) return 0;
    --n_;
    return static_cast<uint8_t>(*p_++);
  }
  uint32_t U32() { return Byte() | uint32_t{Byte()} << 8 | uint32_t{Byte()} << 16 | uint32_t{Byte()} << 24; }
  // Up to max_len bytes, ended by a NUL byte or the end of the input.
  std::string_view Field(size_t max_len = 4096) {
    size_t len = 0;
    while (len < n_ && len < max_len && p_[len] != '\0') ++len;
    std::string_view s(p_, len);
    size_t used = len < n_ ? len + 1 : len;
    p_ += used;
    n_ -= used;
    return s;
  }
  std::string_view Rest() {
    std::string_view s(p_, n_);
    p_ += n_;
    n_ = 0;
    return s;
  }
  size_t remaining() const { return n_; }

 private:
  const char* p_;
  size_t n_;
};

// Chunk sizes for feeding a stream piecewise, from a seed (deterministic).
class Chunker {
 public:
  explicit Chunker(uint32_t seed) : s_(seed | 1) {}
  size_t Next(size_t left) {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 17;
    s_ ^= s_ << 5;
    size_t n = (s_ % 4 == 0) ? s_ % 64 : s_ % 8;  // mostly tiny pieces, sometimes larger
    if (n == 0) n = 1;
    return n < left ? n : left;
  }

 private:
  uint32_t s_;
};

}  // namespace cove::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
