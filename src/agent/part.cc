#include "agent/part.h"

namespace cove::agent {

void Part::Handle(const Chan& c, AnyOp& op) { Reply(c, UnknownOp(std::string(OpName(op)))); }

}  // namespace cove::agent
