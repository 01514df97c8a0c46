// Test-only Resolver: a fixed name -> addresses table, filled by the test.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/resolver.h"

namespace cove::proxy::testing {

class FakeResolver : public Resolver {
 public:
  void Add(const std::string& name, const std::string& address) {
    std::lock_guard lock(mu_);
    names_[name].push_back(*IpAddress::Parse(address));
  }
  Task<Result<std::vector<IpAddress>>> Resolve(std::string host, bool, std::chrono::milliseconds) override {
    std::vector<IpAddress> found;
    {
      std::lock_guard lock(mu_);
      auto it = names_.find(host);
      if (it != names_.end()) found = it->second;
    }
    if (found.empty()) {
      Error error = MakeError(ErrorCode::kNotFound, "no such name: " + host);
      co_return error;
    }
    co_return found;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<IpAddress>> names_;
};

}  // namespace cove::proxy::testing
