// Exponential backoff with jitter for reconnects.
//
// Attempt n (from 0) waits base = min(maxMs, initialMs * factor^n), and then a random part of it
// is taken away: delay = base * (1 - jitter * random()). jitter = 0.5 ("equal jitter") keeps the
// delay within [base/2, base]; jitter = 1 is "full jitter". Clients that lost the same node at the
// same moment thus spread their reconnects instead of arriving together.

export class Backoff {
  constructor({ initialMs = 500, maxMs = 15000, factor = 2, jitter = 0.5, random = Math.random } = {}) {
    if (!(initialMs > 0) || !(maxMs >= initialMs) || !(factor >= 1) || !(jitter >= 0 && jitter <= 1))
      throw new RangeError('Backoff: need 0 < initialMs <= maxMs, factor >= 1, 0 <= jitter <= 1');
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.jitter = jitter;
    this.random = random;
    this.attempt = 0;
  }

  /** The ceiling of attempt n, before jitter. */
  base(n = this.attempt) {
    return Math.min(this.maxMs, this.initialMs * Math.pow(this.factor, n));
  }

  /** The delay before the next attempt (ms); counts the attempt. */
  next() {
    const base = this.base(this.attempt);
    this.attempt++;
    return Math.max(0, Math.round(base * (1 - this.jitter * this.random())));
  }

  /** After a success: the next failure waits initialMs again. */
  reset() {
    this.attempt = 0;
  }
}
