// The last link of the egress chain for the requests the proxy sees (plain
// HTTP, intercepted HTTPS): secrets go into the parsed request head.
// Placeholders of secrets bound to `host` are replaced in header values and
// in the target (`origin_form`); then the deciding rule's header templates
// are expanded and set (replacing fields of the same name). Returns why the
// request must not go (a placeholder of a secret bound to another host: an
// exfiltration attempt; a template naming a missing secret, or a value unfit
// for a header), or empty; the head may then be half rewritten.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "http/http_head.h"
#include "proxy/secret_store.h"

namespace cove::proxy {

std::string InjectSecrets(http::HttpHead& req, std::string& origin_form, const std::string& host,
                          const std::vector<std::pair<std::string, std::string>>& set_headers,
                          const SecretSet& secrets);

}  // namespace cove::proxy
