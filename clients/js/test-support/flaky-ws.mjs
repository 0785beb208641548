// A WebSocket class (over the `ws` package) whose network the test controls:
//   refuse  - new connections fail (as if the node were unreachable)
//   deafen() - the open sockets turn into black holes: they stay "open", but nothing the client
//              sends arrives and nothing from the server gets through (a dead network path)
//   cut()    - every open socket dies at once, without a close handshake
import WebSocketBase from 'ws';

export function flakyWebSocket(Base = WebSocketBase) {
  const ctl = { refuse: false, sockets: new Set(), opened: 0 };
  class FlakyWebSocket extends Base {
    constructor(url, ...rest) {
      super(ctl.refuse ? String(url).replace(/\/\/[^/]+/, '//127.0.0.1:1') : url, ...rest);
      ctl.opened++;
      ctl.sockets.add(this);
      this.addEventListener('close', () => ctl.sockets.delete(this));
    }
    send(data, ...rest) {
      if (this._deaf) return;
      super.send(data, ...rest);
    }
    set onmessage(fn) {
      super.onmessage = fn ? (ev) => (this._deaf ? undefined : fn(ev)) : null;
    }
    get onmessage() {
      return super.onmessage;
    }
  }
  ctl.WebSocket = FlakyWebSocket;
  ctl.deafen = () => {
    for (const s of ctl.sockets) s._deaf = true;
  };
  ctl.cut = () => {
    for (const s of ctl.sockets) s.terminate();
  };
  return ctl;
}
