// Quoting for POSIX shells.
#pragma once

#include <string>
#include <string_view>

namespace cove {

// `word` as one shell word: unchanged when it holds only characters no shell
// treats specially (letters, digits, _@%+=:,./-), else in single quotes with
// each ' written as '\''. The empty word is ''.
std::string ShellQuote(std::string_view word);

// A valid shell variable name ([A-Za-z_][A-Za-z0-9_]*).
bool IsShellName(std::string_view s);

}  // namespace cove
