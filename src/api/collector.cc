#include "api/collector.h"

#include "agent/ops.h"
#include "api/agent_reply.h"

namespace cove::api {

Task<Result<Collected>> Collect(const std::shared_ptr<AgentConnection>& agent, const nlohmann::json& op,
                                CollectOptions o, std::optional<std::string_view> data) {
  using Clock = AgentConnection::Clock;
  auto started = agent->Start(op, data, o.window);
  if (!started.ok()) co_return std::move(started).error();
  std::shared_ptr<AgentConnection::Call> call = std::move(*started);
  if (o.accept_data) call->AcceptData();
  if (o.cancel_with) CancelOnHangUp(*o.cancel_with, call);  // a client that left stops the work
  auto deadline = o.timeout ? Clock::now() + *o.timeout : Clock::time_point::max();
  Collected c;
  size_t received = 0;
  // Returning before the reply drops the call, which cancels it in the agent.
  for (;;) {
    auto m = co_await call->Next(deadline);
    if (!m.ok()) co_return std::move(m).error();
    received += m->wire_bytes;
    if (received > o.max_bytes)
      co_return MakeError(ErrorCode::kResourceExhausted,
                          "the sandbox's answer is larger than " + std::to_string(o.max_bytes >> 20) + " MiB");
    if (m->final) {
      c.reply = std::move(m->body);
      co_return c;
    }
    if (m->raw) {
      if (c.content.size() + m->data.size() > o.max_content) {
        c.overflow = Collected::Overflow::kContent;
        co_return c;
      }
      c.raw_content = true;
      if (c.content.empty() && c.content.capacity() < m->data.size()) {
        c.content = std::move(m->data);
      } else {
        c.content += m->data;
      }
      continue;
    }
    nlohmann::json& b = m->body;
    std::string_view type = agent::TypeOf(b);
    if (type == "stdout" || type == "stderr") {
      auto out = agent::ParseOutputEvent(b);
      if (!out.ok()) co_return MalformedAnswer(out.error());
      std::string& dst = c.output[out->is_stderr];
      if (dst.size() >= o.keep_per_stream) continue;
      if (c.output[0].size() + c.output[1].size() + out->data.size() > o.max_output) {
        c.overflow = Collected::Overflow::kOutput;
        co_return c;
      }
      dst += out->data;
    } else if (type == "metadata") {
      if (o.accept_data)  // the content's size, to hold it without growing (a bound, not trusted)
        if (auto size = b.find("size"); size != b.end() && size->is_number_unsigned())
          c.content.reserve(std::min<uint64_t>(size->get<uint64_t>(), o.max_content));
      c.metadata = std::move(b);
    } else if (type == "chunk") {
      auto it = b.find("data");
      if (it != b.end() && it->is_string()) c.content += it->get_ref<const std::string&>();
      if (c.content.size() > o.max_content && c.content.size() - o.max_content > o.max_content) {
        c.overflow = Collected::Overflow::kContent;
        co_return c;
      }
    } else if (auto batch = b.find("files"); b.is_object() && batch != b.end() && batch->is_array()) {
      for (auto& f : *batch) c.files.push_back(std::move(f));
    }
  }
}

}  // namespace cove::api
