// Baseline peer: a broadcast server on Node's `ws`, the way many chat servers start.
// Each connection joins the room in its URL (?room=g); every text frame goes to the whole room.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0) });
const rooms = new Map();
wss.on('connection', (ws, req) => {
  const room = new URL(req.url, 'http://x').searchParams.get('room') || '0';
  if (!rooms.has(room)) rooms.set(room, new Set());
  rooms.get(room).add(ws);
  ws.on('message', (data) => {
    for (const peer of rooms.get(room)) peer.send(data, { binary: false });
  });
  ws.on('close', () => rooms.get(room).delete(ws));
});
wss.on('listening', () => console.log(wss.address().port));
