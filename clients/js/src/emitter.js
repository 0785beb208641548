// A tiny event emitter (the browser's EventTarget is not in Node 18's every corner, and we want
// plain callbacks with several arguments).

export class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  /** Adds a handler; returns a function that removes it. */
  on(name, fn) {
    let set = this._handlers.get(name);
    if (!set) this._handlers.set(name, (set = new Set()));
    set.add(fn);
    return () => this.off(name, fn);
  }

  /** Adds a handler that runs once. */
  once(name, fn) {
    const off = this.on(name, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(name, fn) {
    this._handlers.get(name)?.delete(fn);
  }

  /** Calls every handler; a throwing handler is reported on 'error' and never stops the others. */
  emit(name, ...args) {
    const set = this._handlers.get(name);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (name !== 'error') this.emit('error', err);
        else console.error(err);
      }
    }
    return true;
  }
}
