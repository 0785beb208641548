#include "gateway/amqp/center.hpp"

#include <spdlog/spdlog.h>

#include <memory>

#include "base/metrics.hpp"
#include "base/utf8.hpp"
#include "proto/codec.hpp"
#include "service/service.hpp"

namespace converge {

void CenterGateway::answer(const CenterRequest& r, std::string frame) {
  if (!r.reply_to.empty()) bus_.reply(r.reply_to, r.correlation_id, std::move(frame));
  bus_.center_done(r.tag);
}

void CenterGateway::handle(CenterRequest r) {
  svc_.run_blocking([this, r = std::move(r)]() mutable {
    auto fail = [&](const std::string& id, const Error& e) {
      svc_.metrics().messages_rejected_total.add();
      answer(r, proto::frame_error(id, e));
    };
    if (!utf8_valid(r.body))
      return fail("", make_error(Errc::bad_json, "the envelope is not UTF-8"));
    std::string id;
    auto env = proto::parse_envelope(r.body, &id);
    if (!env) return fail(id, env.error());
    auto& e = env.value();
    if (e.cmd != "msg")
      return fail(e.id_json,
                  make_error(Errc::unknown_cmd, "conversation.outgoing takes cmd msg, not " +
                                                    std::string(utf8_truncate(e.cmd, 64))));
    if (e.token.empty())
      return fail(e.id_json, make_error(Errc::unauthorized, "token is required (Tricolor<token>)"));
    auto who = svc_.authenticate(e.token);
    if (!who) return fail(e.id_json, who.error());
    // Seed 000's data also names publisher_id and publisher_name: the node stamps both from the
    // token, whatever the envelope says.
    auto req = proto::parse_send(e.data, max_body_bytes_);
    if (!req) return fail(e.id_json, req.error());
    // An envelope without a client_msg_id is identified by its AMQP message_id, when it has
    // one: a node that dies after storing it and before acking makes the broker hand it to
    // another node, and the retry is then a duplicate (answered with the first seq).
    if (req.value().client_msg_id.empty() && !r.message_id.empty() && r.message_id.size() <= 128 &&
        utf8_valid(r.message_id))
      req.value().client_msg_id = r.message_id;
    svc_.metrics().center_requests_total.add();
    if (r.redelivered) svc_.metrics().center_redelivered_total.add();
    auto shared = std::make_shared<CenterRequest>(std::move(r));
    svc_.send(
        who.value(), std::move(req.value()), [this, shared, id = e.id_json](Result<SendAck> a) {
          answer(*shared, a ? proto::frame_ack(id, a.value()) : proto::frame_error(id, a.error()));
        });
  });
}

}  // namespace converge
