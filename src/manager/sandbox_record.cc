#include "manager/sandbox_record.h"

#include "base/log.h"

namespace cove {

const char* SandboxStateName(SandboxState s) {
  switch (s) {
    case SandboxState::kCreating: return "creating";
    case SandboxState::kRunning: return "running";
    case SandboxState::kFailed: return "failed";
    case SandboxState::kDeleting: return "deleting";
  }
  return "unknown";
}

nlohmann::json SandboxRecord::ToJson() const {
  nlohmann::json port_list = nlohmann::json::array();
  for (const auto& p : ports)
    port_list.push_back({{"port", p.port}, {"name", p.name}, {"token", p.token}, {"createdMs", p.created_ms}});
  return {{"id", id},
          {"image", image},
          {"instanceType", instance_type},
          {"limits",
           {{"cpuMillis", limits.cpu_millis},
            {"memoryBytes", limits.memory_bytes},
            {"pids", limits.pids},
            {"diskBytes", limits.disk_bytes}}},
          {"env", env},
          {"labels", labels},
          {"user", user},
          {"createdMs", created_ms},
          {"state", SandboxStateName(state)},
          {"failure", failure},
          {"interruptedCreate", interrupted_create},
          {"slot", slot},
          {"pid", pid},
          {"startTicks", start_ticks},
          {"egress", egress ? egress->ToJson() : nlohmann::json()},
          {"ports", std::move(port_list)}};
}

Result<SandboxRecord> SandboxRecord::FromJson(const nlohmann::json& j) {
  SandboxRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.image = j.at("image").get<std::string>();
    r.instance_type = j.at("instanceType").get<std::string>();
    const auto& l = j.at("limits");
    r.limits.cpu_millis = l.at("cpuMillis").get<uint32_t>();
    r.limits.memory_bytes = l.at("memoryBytes").get<uint64_t>();
    r.limits.pids = l.at("pids").get<uint64_t>();
    r.limits.disk_bytes = l.at("diskBytes").get<uint64_t>();
    r.env = j.at("env").get<std::map<std::string, std::string>>();
    r.labels = j.at("labels").get<std::map<std::string, std::string>>();
    r.user = j.at("user").get<std::string>();
    r.created_ms = j.at("createdMs").get<int64_t>();
    std::string state = j.at("state").get<std::string>();
    r.state = state == "running"    ? SandboxState::kRunning
              : state == "creating" ? SandboxState::kCreating
              : state == "deleting" ? SandboxState::kDeleting
                                    : SandboxState::kFailed;
    r.failure = j.at("failure").get<std::string>();
    r.interrupted_create = j.value("interruptedCreate", false);  // absent in records of older versions
    r.slot = j.at("slot").get<uint32_t>();
    r.pid = j.at("pid").get<int>();
    r.start_ticks = j.at("startTicks").get<uint64_t>();
    if (j.contains("egress") && !j["egress"].is_null()) {  // absent in records of older versions
      auto policy = proxy::EgressPolicy::FromJson(j["egress"]);
      if (policy.ok()) {
        r.egress = std::make_shared<const proxy::EgressPolicy>(std::move(*policy));
      } else {
        // Validated when it was set: only a record from an incompatible version gets here.
        log::Error("sandbox {}: stored egress policy is invalid ({}); denying all egress", r.id,
                   policy.error().ToString());
        auto deny_all = std::make_shared<proxy::EgressPolicy>();
        deny_all->enable_internet = false;
        r.egress = std::move(deny_all);
      }
    }
    if (j.contains("ports")) {                         // likewise
      for (const auto& p : j["ports"]) {
        PortExposure e;
        e.port = p.at("port").get<uint16_t>();
        e.name = p.at("name").get<std::string>();
        e.token = p.at("token").get<std::string>();
        e.created_ms = p.at("createdMs").get<int64_t>();
        r.ports.push_back(std::move(e));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("bad sandbox record: ") + e.what());
  }
  return r;
}

}  // namespace cove
