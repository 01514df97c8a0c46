#include "agent/part.h"

namespace cove::agent {

void Part::Handle(const Chan& c, const std::string& op, json&) { Reply(c, UnknownOp(op)); }

}  // namespace cove::agent
