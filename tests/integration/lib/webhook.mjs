// A webhook receiver for the offline-push tests (docs/protocol.md, "Offline push"): a local
// HTTP server that checks each POST's X-Converge-Signature, records its pushes and answers as
// scripted.
//
//   const rx = await new PushReceiver({ fallback: 200 }).start();   // rx.url
//   rx.script.push(500, 'hang');          // the next two requests: a 500, then no answer
//   const p = await rx.deliveredPush('bob', conv, 1);                // answered 2xx
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';

export const SECRET = 'push-secret-0123456789';
const WAIT_MS = 10000;

// A webhook receiver. `script` holds what the next requests get: a status, or 'hang' (no answer
// until the test ends). After the script, `fallback`.
export class PushReceiver {
  constructor({ fallback = 200 } = {}) {
    this.fallback = fallback;
    this.script = [];
    this.requests = []; // {pushes, status, signatureOk, body, headers}
    this.waiters = new Set();
    this.hung = [];
    this.server = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const want = 'sha256=' + createHmac('sha256', SECRET).update(body).digest('hex');
        let parsed = null;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch {
          parsed = null;
        }
        const action = this.script.length > 0 ? this.script.shift() : this.fallback;
        const r = {
          method: req.method,
          url: req.url,
          headers: req.headers,
          body: body.toString('utf8'),
          signatureOk: req.headers['x-converge-signature'] === want,
          pushes: parsed && Array.isArray(parsed.pushes) ? parsed.pushes : null,
          status: action === 'hang' ? 'hang' : action,
        };
        this.requests.push(r);
        if (action === 'hang') {
          this.hung.push(res);
        } else {
          res.writeHead(action, { 'Content-Type': 'text/plain' });
          res.end(action >= 200 && action < 300 ? 'ok' : 'no');
        }
        for (const w of [...this.waiters]) w();
      });
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/hooks/converge?v=1`;
    return this;
  }

  async stop() {
    for (const res of this.hung) res.destroy();
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(resolve));
  }

  // Every push of every request, with the status its request got.
  all() {
    return this.requests.flatMap((r) => (r.pushes || []).map((p) => ({ ...p, status: r.status })));
  }

  // Pushes delivered: in requests answered 2xx.
  delivered() {
    return this.all().filter((p) => typeof p.status === 'number' && p.status >= 200 && p.status < 300);
  }

  // Resolves once pred() holds (checked on every request), rejects after `timeout`.
  until(pred, { timeout = WAIT_MS, label = 'pushes' } = {}) {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = () => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters.delete(w);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timed out waiting for ${label}; requests: ${JSON.stringify(this.requests.map((r) => ({ status: r.status, pushes: r.pushes })))}`));
      }, timeout);
      this.waiters.add(w);
    });
  }

  // Waits until the push for (user, conversation, seq) is delivered; returns it.
  async deliveredPush(user, conv, seq, opts) {
    const find = () => this.delivered().find((p) => matches(p, user, conv, seq));
    await this.until(() => find() !== undefined, { label: `push ${user} ${conv}:${seq}`, ...opts });
    return find();
  }
}

export const matches = (p, user, conv, seq) =>
  p.user_id === user && p.conversation_id === String(conv) && p.seq === seq;
export const count = (list, user, conv, seq) => list.filter((p) => matches(p, user, conv, seq)).length;

