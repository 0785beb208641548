// Baseline peer: a socket.io chat server, the choice many chat builders make.
// A client joins the room in its handshake query (?room=g); a "msg" event goes to the whole room.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  const room = String(socket.handshake.query.room ?? '0');
  socket.join(room);
  socket.on('msg', (body) => io.to(room).emit('msg', body));
});
http.listen(Number(process.argv[2] || 0), '127.0.0.1', () => console.log(http.address().port));
