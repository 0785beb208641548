// Per-conversation record of the seqs a client has seen, to drop duplicates by
// (conversation_id, seq) and to know what to report in heartbeats.
//
// Delivery is at-least-once: the live stream, a sync after a reconnect and a retried page can each
// hand over the same message. For every conversation the tracker keeps a floor (every seq <= floor
// has been seen) and the set of seen seqs above it; the floor rises as the gaps fill. The floor is
// what the client has processed without a hole, so it is what heartbeats carry: the server's
// offline sync then resumes right after it and nothing is skipped.
//
// A conversation whose floor is unknown starts at 0 (everything is new) unless initFloor() says
// otherwise. The set above the floor is bounded: past maxPending entries the floor jumps to just
// below the lowest seen seq (the hole below it is given up on, it cannot be waited for forever).

export class SeqTracker {
  constructor({ maxPending = 10000 } = {}) {
    this.maxPending = maxPending;
    this._convs = new Map(); // conversation id (string) -> { floor, above: Set<number> }
  }

  _conv(id, create) {
    const key = String(id);
    let c = this._convs.get(key);
    if (!c && create) this._convs.set(key, (c = { floor: 0, above: new Set() }));
    return c;
  }

  /** Whether anything is known about the conversation. */
  has(id) {
    return this._convs.has(String(id));
  }

  /** Every seq <= the returned value has been seen (0 if nothing, or unknown). */
  floor(id) {
    return this._conv(id, false)?.floor ?? 0;
  }

  /** Sets the floor of a conversation not known yet; returns whether it did. */
  initFloor(id, seq) {
    if (this.has(id)) return false;
    this._conv(id, true).floor = Math.max(0, seq);
    return true;
  }

  /** Raises the floor (never lowers it): everything up to seq counts as seen. */
  setFloor(id, seq) {
    const c = this._conv(id, true);
    if (seq <= c.floor) return;
    c.floor = seq;
    for (const s of c.above) if (s <= seq) c.above.delete(s);
    this._advance(c);
  }

  /** The lowest seq seen above the floor, i.e. the top of the hole below it (0 if there is none). */
  lowestAbove(id) {
    const c = this._conv(id, false);
    if (!c || c.above.size === 0) return 0;
    let low = Infinity;
    for (const s of c.above) if (s < low) low = s;
    return low;
  }

  /** Whether (id, seq) was seen. */
  seen(id, seq) {
    const c = this._conv(id, false);
    if (!c) return false;
    return seq <= c.floor || c.above.has(seq);
  }

  /** Records (id, seq); returns true if it is new, false for a duplicate. */
  accept(id, seq) {
    if (!Number.isInteger(seq) || seq < 1) return false;
    const c = this._conv(id, true);
    if (seq <= c.floor || c.above.has(seq)) return false;
    if (seq === c.floor + 1) {
      c.floor = seq;
      this._advance(c);
    } else {
      c.above.add(seq);
      if (c.above.size > this.maxPending) {
        c.floor = Math.min(...c.above) - 1;
        this._advance(c);
      }
    }
    return true;
  }

  _advance(c) {
    while (c.above.has(c.floor + 1)) {
      c.above.delete(c.floor + 1);
      c.floor++;
    }
  }

  /** Forgets a conversation (e.g. the user left it). */
  forget(id) {
    this._convs.delete(String(id));
  }

  /** { conversation_id: floor } for the given conversations (all known ones by default), floors > 0. */
  snapshot(ids) {
    const out = {};
    const keys = ids ? [...ids].map(String) : [...this._convs.keys()];
    for (const k of keys) {
      const c = this._convs.get(k);
      if (c && c.floor > 0) out[k] = c.floor;
    }
    return out;
  }
}
