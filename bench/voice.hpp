#pragma once
// The voice scenario (issue 15): R rooms × M members, S speakers in each sending F audio frames
// a second, every frame relayed to the room's other members. Against Converge's voice rooms
// (docs/protocol.md, "Voice rooms": users and rooms made over HTTP, `room.join` over the
// WebSocket, binary frames up and down) or the bare TCP ceiling (bench/peers/tcp_fanout.cpp: a
// frame starting with byte 1 goes to every other member of the sender's group, as it is).
//
// Frames (both servers deliver the same bytes, big-endian):
//   up, Converge   [u8 1][u32 room_id][u16 seq][payload]
//   up, TCP        [u8 1][u32 room][u32 member][u16 seq][payload]   (in its [u32 len] frame)
//   down, both     [u8 1][u32 room][u32 sender][u16 seq][payload]
// payload (`size` bytes, 16 at least): [u64 send time, ns, steady clock][u32 speaker connection]
// [u32 frame number][padding]. Receivers take the relay latency from the send time (generator
// and server on one machine, one clock) and count, per listener, what they got against what
// the other speakers of their room sent.
#include <boost/json/object.hpp>
#include <cstdint>
#include <string>

namespace converge::bench {

struct VoiceOptions {
  std::string target = "converge";  // converge (voice rooms) | tcp (the ceiling)
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int rooms = 10;
  int members = 50;   // per room, speakers included
  int speakers = 3;   // per room: members 0..speakers-1
  double fps = 50;    // frames a second per speaker (Opus: one per 20 ms)
  int size = 80;      // payload bytes
  double duration = 5;
  double warmup = 1;
  double drain = 1;
  int threads = 2;
  int sources = 8;
  int server_pid = 0;
  std::string label;
};

// Runs it; the result object (as the other scenarios', printed with --json), or an "error" key.
boost::json::object run_voice(const VoiceOptions& o);

}  // namespace converge::bench
