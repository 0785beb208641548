#include "service/device_stream.hpp"

#include <gtest/gtest.h>

#include "service/test_fixture.hpp"

using namespace converge;
using converge::testing::ServiceFixture;

namespace {

class Stream : public ServiceFixture {
 protected:
  std::shared_ptr<DeviceStream> make() {
    return DeviceStream::create(
        *svc_, [this](std::function<void()> fn) { loop_.post(std::move(fn)); },
        [this](const std::shared_ptr<const Delivery>& d) {
          out.emplace_back(d->msg.conversation_id, d->msg.seq);
        },
        [this] { overflowed = true; });
  }
  static std::shared_ptr<const Delivery> live(ConversationId c, Seq s) {
    auto d = std::make_shared<Delivery>();
    d->msg.conversation_id = c;
    d->msg.seq = s;
    return d;
  }
  std::vector<std::pair<ConversationId, Seq>> out;
  bool overflowed = false;
};

TEST_F(Stream, InOrderPassesStraightThroughAndDuplicatesDrop) {
  auto st = make();
  st->start({{7, 2}}, {{7, 2}});
  st->on_delivery(live(7, 3));
  st->on_delivery(live(7, 3));
  st->on_delivery(live(7, 2));
  st->on_delivery(live(7, 4));
  EXPECT_EQ(out, (std::vector<std::pair<ConversationId, Seq>>{{7, 3}, {7, 4}}));
}

TEST_F(Stream, AGapIsFilledFromTheStoreBeforeWhatFollows) {
  auto a = user("alice");
  user("bob");
  auto g = group(a, {"bob"});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(send(a, g, "m"));
  auto st = make();
  st->start({{g, 1}}, {{g, 1}});
  st->on_delivery(live(g, 6));  // out of order: 2..5 are missing here
  st->on_delivery(live(g, 5));  // arrives while the fill is in flight
  ASSERT_TRUE(loop_.run_until([&] { return out.size() == 5; }));
  std::vector<Seq> seqs;
  for (auto& [c, s] : out) seqs.push_back(s);
  EXPECT_EQ(seqs, (std::vector<Seq>{2, 3, 4, 5, 6}));
  EXPECT_GE(metrics_.gap_fills_total.value(), 1u);
}

TEST_F(Stream, StartCatchesUpToTheLastSeqAndHoldsLiveUntilThen) {
  auto a = user("alice");
  user("bob");
  auto g = group(a, {"bob"});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(send(a, g, "m"));
  auto st = make();
  st->on_delivery(live(g, 4));  // live before the positions are known: held
  EXPECT_TRUE(out.empty());
  st->start({{g, 0}}, {{g, 3}});
  ASSERT_TRUE(loop_.run_until([&] { return out.size() == 4; }));
  EXPECT_EQ(out.back().second, 4);
  EXPECT_EQ(out.front().second, 1);
}

TEST_F(Stream, AConversationWithoutCursorStartsAtItsFirstLiveMessage) {
  auto st = make();
  st->start({}, {{9, 40}});
  st->on_delivery(live(9, 41));
  st->on_delivery(live(9, 42));
  EXPECT_EQ(out, (std::vector<std::pair<ConversationId, Seq>>{{9, 41}, {9, 42}}));
}

TEST_F(Stream, AdvanceSkipsWhatASyncAlreadyDelivered) {
  auto st = make();
  st->start({{5, 1}}, {{5, 1}});
  st->advance(5, 10);
  st->on_delivery(live(5, 10));
  st->on_delivery(live(5, 11));
  EXPECT_EQ(out, (std::vector<std::pair<ConversationId, Seq>>{{5, 11}}));
}

TEST_F(Stream, HoldingTooMuchOverflows) {
  auto st = make();
  for (Seq s = 1; s <= static_cast<Seq>(DeviceStream::kMaxHeld) + 1; ++s)
    st->on_delivery(live(3, s));
  EXPECT_TRUE(overflowed);
}

}  // namespace
