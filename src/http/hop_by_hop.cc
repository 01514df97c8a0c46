#include "http/hop_by_hop.h"

#include "base/ascii.h"

namespace cove::http {

bool ConnectionMayDrop(std::string_view field) {
  return !AsciiIEquals(field, "transfer-encoding") && !AsciiIEquals(field, "content-length") &&
         !AsciiIEquals(field, "host");
}

}  // namespace cove::http
