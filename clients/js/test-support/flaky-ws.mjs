// A WebSocket class (over the `ws` package) whose network the test controls:
//   refuse  - new connections fail (as if the node were unreachable)
//   deafen() - the open sockets turn into black holes: they stay "open", but nothing the client
//              sends arrives and nothing from the server gets through (a dead network path)
//   cut()    - every open socket dies at once, without a close handshake
//   drop     - (text) => boolean: text frames from the server it returns true for are not passed on
//   inject(f) - hands every open socket's client a frame of the test's own (an object or a string),
//              as if the server had sent it
import WebSocketBase from 'ws';

export function flakyWebSocket(Base = WebSocketBase) {
  const ctl = { refuse: false, sockets: new Set(), opened: 0, drop: null };
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
      this._client = fn;
      super.onmessage = fn
        ? (ev) => {
            if (this._deaf) return;
            if (ctl.drop && ctl.drop(typeof ev.data === 'string' ? ev.data : String(ev.data))) return;
            fn(ev);
          }
        : null;
    }
    get onmessage() {
      return super.onmessage;
    }
  }
  ctl.WebSocket = FlakyWebSocket;
  ctl.deafen = () => {
    for (const s of ctl.sockets) s._deaf = true;
  };
  ctl.inject = (frame) => {
    const data = typeof frame === 'string' ? frame : JSON.stringify(frame);
    for (const s of ctl.sockets) if (s.readyState === 1) s._client?.({ data });
  };
  ctl.cut = () => {
    for (const s of ctl.sockets) s.terminate();
  };
  return ctl;
}
