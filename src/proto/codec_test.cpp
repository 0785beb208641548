#include <gtest/gtest.h>

#include "proto/codec.hpp"

using namespace converge;
using namespace converge::proto;

TEST(Envelope, ParsesTheSeedEnvelope) {
  auto e = parse_envelope(
      R"({"token":"Tricolorabc","cmd":"msg","id":7,"data":{"conversation_id":"1","type":"text","body":"hi"}})");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->cmd, "msg");
  EXPECT_EQ(e->id_json, "7");
  EXPECT_EQ(e->token, "abc");
  EXPECT_TRUE(e->data.contains("body"));
}

TEST(Envelope, KeepsAStringIdVerbatim) {
  auto e = parse_envelope(R"({"cmd":"ping","id":"r-1"})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id_json, "\"r-1\"");
}

TEST(Envelope, RejectsWhatIsNotAnEnvelope) {
  EXPECT_EQ(parse_envelope("{nope").error().code, Errc::bad_json);
  EXPECT_EQ(parse_envelope("[1,2]").error().code, Errc::bad_json);
  EXPECT_EQ(parse_envelope(R"({"data":{}})").error().code, Errc::bad_request);
  EXPECT_EQ(parse_envelope(R"({"cmd":5})").error().code, Errc::bad_request);
  EXPECT_EQ(parse_envelope(R"({"cmd":"msg","data":[1]})").error().code, Errc::bad_request);
  EXPECT_EQ(parse_envelope(R"({"cmd":"msg","id":{"a":1}})").error().code, Errc::bad_request);
  std::string deep(100, '[');
  EXPECT_EQ(parse_envelope(deep).error().code, Errc::bad_json);
}

TEST(Send, AcceptsStringOrNumberConversationIds) {
  auto o = parse_object(R"({"conversation_id":12,"body":"x"})");
  ASSERT_TRUE(o);
  auto r = parse_send(o.value(), 100);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->conversation_id, 12);
  EXPECT_EQ(r->type, MessageType::text);
}

TEST(Send, ValidatesTypesAndSizes) {
  auto check = [](const char* json, Errc want) {
    auto o = parse_object(json);
    ASSERT_TRUE(o) << json;
    auto r = parse_send(o.value(), 16);
    ASSERT_FALSE(r) << json;
    EXPECT_EQ(r.error().code, want) << json << ": " << r.error().message;
  };
  check(R"({"body":"x"})", Errc::bad_request);                        // no conversation
  check(R"({"conversation_id":{},"body":"x"})", Errc::bad_request);   // wrong type
  check(R"({"conversation_id":"0","body":"x"})", Errc::bad_request);  // not an id
  check(R"({"conversation_id":"1","body":5})", Errc::bad_request);    // body not string
  check(R"({"conversation_id":"1","type":"video","body":"x"})", Errc::bad_request);
  check(R"({"conversation_id":"1","type":"text"})", Errc::bad_request);   // empty text
  check(R"({"conversation_id":"1","type":"image"})", Errc::bad_request);  // no file_id
  check(R"({"conversation_id":"1","body":"01234567890123456"})", Errc::too_large);
  check(R"({"conversation_id":"1","body":"x","client_msg_id":7})", Errc::bad_request);
}

TEST(Send, MentionsAreUserIdsOrAllAlone) {
  auto parse = [](const char* json) {
    auto o = parse_object(json);
    EXPECT_TRUE(o) << json;
    return parse_send(o.value(), 100);
  };
  auto r = parse(R"({"conversation_id":1,"body":"x","mentions":["Carol","bob","carol"]})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->mentions, (std::vector<std::string>{"bob", "carol"}));  // folded, sorted, once
  r = parse(R"({"conversation_id":1,"body":"x","mentions":["ALL"]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->mentions, (std::vector<std::string>{"all"}));
  r = parse(R"({"conversation_id":1,"body":"x","mentions":null})");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->mentions.empty());
  r = parse(R"({"conversation_id":1,"body":"x","mentions":[]})");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->mentions.empty());

  auto refused = [&](const char* json, Errc want) {
    auto r = parse(json);
    ASSERT_FALSE(r) << json;
    EXPECT_EQ(r.error().code, want) << json << ": " << r.error().message;
  };
  refused(R"({"conversation_id":1,"body":"x","mentions":"bob"})", Errc::bad_request);
  refused(R"({"conversation_id":1,"body":"x","mentions":{"bob":1}})", Errc::bad_request);
  refused(R"({"conversation_id":1,"body":"x","mentions":[7]})", Errc::bad_request);
  refused(R"({"conversation_id":1,"body":"x","mentions":["b\"ob"]})", Errc::bad_request);
  refused(R"({"conversation_id":1,"body":"x","mentions":["a,b"]})", Errc::bad_request);
  refused(R"({"conversation_id":1,"body":"x","mentions":["all","bob"]})", Errc::bad_request);
  std::string many = R"({"conversation_id":1,"body":"x","mentions":[)";
  for (std::size_t i = 0; i <= kMaxMentions; ++i)
    many += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
  many += "]}";
  refused(many.c_str(), Errc::too_large);
}

TEST(Seqs, ParsesCursorMaps) {
  auto o = parse_object(R"({"seqs":{"1":5,"22":0}})");
  auto r = parse_seqs(o.value());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->at(1), 5);
  EXPECT_EQ(r->at(22), 0);
  auto bad = parse_object(R"({"seqs":{"x":1}})");
  EXPECT_FALSE(parse_seqs(bad.value()));
  auto neg = parse_object(R"({"seqs":{"1":-1}})");
  EXPECT_FALSE(parse_seqs(neg.value()));
  auto none = parse_object(R"({})");
  EXPECT_TRUE(parse_seqs(none.value())->empty());
}

TEST(Frames, MessageFrameHasTheStoredMessageShape) {
  Message m;
  m.conversation_id = 3;
  m.seq = 9;
  m.publisher_id = "alice";
  m.publisher_name = "Alice";
  m.type = MessageType::image;
  m.client_msg_id = "c1";
  m.ts_ms = 1000;
  m.file = FileMeta{"f1", "sha", "cat.png", "image/png", 42, "alice", 1};
  auto f = parse_envelope(frame_msg(m));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->cmd, "msg");
  auto& d = f->data;
  EXPECT_EQ(d.at("conversation_id").as_string(), "3");
  EXPECT_EQ(d.at("seq").as_int64(), 9);
  EXPECT_EQ(d.at("type").as_string(), "image");
  EXPECT_EQ(d.at("file").as_object().at("url").as_string(), "/api/v1/files/f1");
  EXPECT_EQ(d.at("file").as_object().at("size").as_int64(), 42);
}

// frame_msg and frame_ack write JSON by hand: byte for byte what the json::object route writes,
// for text that needs escaping too.
TEST(Frames, HandWrittenFramesMatchTheObjectRoute) {
  const std::string texts[] = {"",
                               "plain",
                               "quote \" and \\ slash /",
                               "tab\tnl\n\x01\x1f",
                               "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80",
                               "<script>"};
  for (auto& t : texts) {
    Message m;
    m.conversation_id = 12;
    m.seq = 34;
    m.publisher_id = t;
    m.publisher_name = t;
    m.type = MessageType::file;
    m.body = t;
    m.client_msg_id = t;
    m.ts_ms = 1700000000123;
    EXPECT_EQ(frame_msg(m), frame("msg", "", message_json(m))) << t;
    m.file = FileMeta{"f\"1", "sha", t, "text/plain", 7, "alice", 1};
    EXPECT_EQ(frame_msg(m), frame("msg", "", message_json(m))) << t;
    m.mentions = {"bob", "carol"};
    EXPECT_EQ(frame_msg(m), frame("msg", "", message_json(m))) << t;
    auto back = parse_message_frame(frame_msg(m));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->mentions, m.mentions);

    for (bool dup : {false, true})
      for (std::string id : {"", "7", "\"q\""}) {
        SendAck a{12, 34, t, 1700000000123, dup};
        json::object d{
            {"conversation_id", "12"}, {"seq", 34}, {"client_msg_id", t}, {"ts", 1700000000123}};
        if (dup) d["duplicate"] = true;
        EXPECT_EQ(frame_ack(id, a), frame("ack", id, d)) << t;
      }
  }
}

// Sync pages are written by hand too: the same bytes as the object route, with and without more.
TEST(Frames, HandWrittenSyncPagesMatchTheObjectRoute) {
  SyncPage page;
  EXPECT_EQ(sync_page_body(page), serialize(sync_page_json(page)));
  EXPECT_EQ(frame_sync("\"s1\"", page), frame("sync", "\"s1\"", sync_page_json(page)));
  for (int i = 0; i < 3; ++i) {
    Message m;
    m.conversation_id = 4 + i;
    m.seq = 10 * i + 1;
    m.publisher_id = "alice";
    m.publisher_name = i == 1 ? "caf\xc3\xa9 \"q\"" : "Alice";
    m.body = i == 2 ? std::string("bad \xff utf-8\n") : "hello";
    m.client_msg_id = "c" + std::to_string(i);
    m.ts_ms = 1700000000000 + i;
    if (i == 1) m.mentions = {"bob"};
    page.messages.push_back(m);
  }
  for (bool more : {false, true}) {
    page.more = more;
    page.next_cursor = more ? "6:21" : "";
    EXPECT_EQ(sync_page_body(page), serialize(sync_page_json(page)));
    for (std::string id : {"", "7", "\"s\""})
      EXPECT_EQ(frame_sync(id, page), frame("sync", id, sync_page_json(page)));
  }
}

TEST(Frames, ErrorFrameEchoesTheId) {
  auto s = frame_error("\"q\"", make_error(Errc::forbidden, "no"));
  EXPECT_EQ(s, R"({"cmd":"error","id":"q","data":{"code":"forbidden","message":"no"}})");
  EXPECT_EQ(error_body(make_error(Errc::not_found, "x")),
            R"({"error":{"code":"not_found","message":"x"}})");
}
