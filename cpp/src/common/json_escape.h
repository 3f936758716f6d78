// JSON string escaping, written once (request bodies, the simulator's responses and metrics).
#pragma once

#include <string>
#include <string_view>

namespace agentperf {

/// Appends `s` escaped as the inside of a JSON string (no quotes): '"' and '\\' escaped, \n \r \t
/// in short form, other control characters as \u00XX. Bytes >= 0x80 pass through (UTF-8 stays
/// UTF-8).
void json_escape_append(std::string_view s, std::string& out);

/// `s` escaped, without quotes.
inline std::string json_escape(std::string_view s) {
  std::string out;
  json_escape_append(s, out);
  return out;
}

/// `s` as a JSON string literal, with its quotes.
inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  json_escape_append(s, out);
  out += '"';
  return out;
}

}  // namespace agentperf
