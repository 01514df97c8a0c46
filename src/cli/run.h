// `cove run`: code in an interpreter context of a sandbox (docs/interpreter.md)
// from a file, stdin, or an interactive prompt. Pure helpers (unit-tested)
// and the rendering of one execution's events.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "base/error.h"

namespace cove::cli {

// ---- input completeness of the REPL

// How a REPL input (one or more lines joined with '\n') ends, from a small
// tokenizer that knows comments and string literals of the language
// ("python", "javascript" or "typescript").
struct InputScan {
  int depth = 0;                 // unclosed ( [ { (never below 0)
  bool open_string = false;      // inside a triple-quoted string (Python), a
                                 // template literal or block comment (JS)
  bool backslash = false;        // the last line ends with '\'
  bool block = false;            // Python: a line ended with ':' or began with '@'
};
InputScan ScanInput(std::string_view code, std::string_view language);

// True when the input needs more lines before it runs: Python waits while
// brackets or a triple-quoted string are open or the last line ends with
// '\', and after a block opener (a line ending with ':') until a blank
// line; JavaScript/TypeScript wait until brackets, template literals and
// comments are closed.
bool NeedsMoreInput(std::string_view code, std::string_view language);

// ---- rich results

// Width and height of a PNG (from IHDR) or JPEG (from its SOF marker);
// nullopt when the data is neither or is truncated.
std::optional<std::pair<uint32_t, uint32_t>> PngSize(std::string_view data);
std::optional<std::pair<uint32_t, uint32_t>> JpegSize(std::string_view data);

// True for a one-line text like "<IPython.core.display.HTML object>": the
// text of a rich result that has nothing to say beyond its other formats.
bool IsPlaceholderText(std::string_view text);

// "cove-result-N.EXT".
std::string ResultFileName(int n, std::string_view ext);

// Writes data to dir/cove-result-N.EXT for the first N >= *next whose file
// does not exist yet (created with O_EXCL: never overwrites), sets *next past
// it, and returns the file's name (without dir).
Result<std::string> SaveResultFile(const std::string& dir, std::string_view ext,
                                   std::string_view data, int* next);

}  // namespace cove::cli
