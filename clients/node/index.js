'use strict';
// The service side of `handover run`: JSON lines on the channel whose descriptor
// `handover` passes in $HANDOVER_EVENTS_FD (version 1, the README's table).

const { EventEmitter } = require('events');
const net = require('net');
const readline = require('readline');

/** The channel version this client speaks. */
const CHANNEL_VERSION = 1;
/** The longest state the protocol carries, in bytes. */
const MAX_STATE = 64;

/** mongoose-failover's names for the roles. */
const MONGOOSE = { active: 'master', standby: 'slave' };

/**
 * Events that say what is true now: a listener added after one was emitted is
 * called at once with it.
 */
const STICKY = new Set(['hello', 'role', 'leader', 'state', 'checkpoint', 'synchronize',
  'active', 'standby', 'master', 'slave', 'statechange']);

class Handover extends EventEmitter {
  /**
   * Connects to the channel of the `handover run` this process runs under.
   * @param {{fd?: number}} [options]
   */
  constructor(options = {}) {
    super();
    const fd = options.fd !== undefined ? options.fd : process.env.HANDOVER_EVENTS_FD;
    if (fd === undefined || fd === '') {
      throw new Error('HANDOVER_EVENTS_FD is not set: start this service with `handover run -- ...`');
    }
    this.id = null;
    this.queue = null;
    this.role = null;
    this.leader = null;
    this.checkpointId = 0;
    this._tasks = [];
    this._handler = null;
    this._running = null;
    this._stopping = false;
    this._hooks = [];
    this._signalsTaken = false;
    this._corked = false;
    this._sticky = new Map();
    this.on('newListener', (event, listener) => {
      if (this._sticky.has(event)) listener.apply(this, this._sticky.get(event));
    });
    this._socket = new net.Socket({ fd: Number(fd), readable: true, writable: true });
    this._socket.on('error', (e) => this._warn(e));
    this._socket.on('close', () => this.emit('close'));
    readline
      .createInterface({ input: this._socket, crlfDelay: Infinity })
      .on('line', (line) => this._line(line));
  }

  /** The service is ready: claim (hand-over) or stand by (failover). */
  ready() {
    this._send({ cmd: 'ready' });
  }

  /**
   * While active, carry `state` (up to 64 bytes) on the heartbeats: a standby
   * gets it as its `state` event.
   * @param {Buffer|Uint8Array|string} state
   */
  publishState(state) {
    const bytes = Buffer.from(state);
    if (bytes.length > MAX_STATE) {
      throw new RangeError(`publishState: ${bytes.length} bytes (at most ${MAX_STATE})`);
    }
    this._send({ cmd: 'state', state: bytes.toString('hex') });
  }

  /** While active and without `--queue`: record progress `id` (it only grows). */
  checkpoint(id) {
    this._send({ cmd: 'checkpoint', id: taskId(id) });
  }

  /**
   * Queue a task (`handover run --queue`), on every instance, in id order: the
   * active instance's service runs it through `process`.
   * @param {number} id from 1, growing
   * @param {*} payload any JSON value (16 KiB at most)
   */
  submit(id, payload) {
    this._send({ cmd: 'submit', id: taskId(id), payload: payload === undefined ? null : payload });
  }

  /**
   * Runs the queue's tasks while this instance is active, one at a time:
   * `handler(payload, id)` returns (or resolves to) true when the task is done,
   * false (or throws) to run it again. A stop signal lets the task running
   * finish first.
   * @param {(payload: any, id: number) => boolean | Promise<boolean>} handler
   */
  process(handler) {
    this._handler = handler;
    this._takeSignals();
    this._next();
  }

  /**
   * Runs `hook` when `handover` stops this service (a newer instance took over,
   * or the instance is stopped), after the task running is done; then exits 0.
   * @param {() => void | Promise<void>} hook
   */
  onShutdown(hook) {
    this._hooks.push(hook);
    this._takeSignals();
  }

  /** Leave the group now (a standby takes over), as on SIGTERM. */
  leave() {
    this._send({ cmd: 'leave' });
  }

  /**
   * The service is alive (`handover run --watchdog`, as systemd's WATCHDOG=1):
   * call it from the code whose progress matters at least every half of
   * `$WATCHDOG_USEC`; a longer silence fails the service over.
   */
  watchdog() {
    this._send({ cmd: 'watchdog' });
  }

  /** Closes the channel. */
  close() {
    this._socket.end();
  }

  emit(event, ...args) {
    if (STICKY.has(event)) this._sticky.set(event, args);
    return super.emit(event, ...args);
  }

  _send(line) {
    if (this._socket.destroyed) return;
    // The lines of one tick leave in one write.
    if (!this._corked) {
      this._corked = true;
      this._socket.cork();
      process.nextTick(() => {
        this._corked = false;
        this._socket.uncork();
      });
    }
    this._socket.write(JSON.stringify(line) + '\n');
  }

  _warn(error) {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else process.emitWarning(`handover: ${error.message || error}`);
  }

  _line(text) {
    let line;
    try {
      line = JSON.parse(text);
    } catch (e) {
      return this._warn(new Error(`not JSON from handover: ${text.slice(0, 80)}`));
    }
    switch (line.event) {
      case 'hello':
        this.id = line.id;
        this.queue = line.queue || null;
        if (line.channel > CHANNEL_VERSION) {
          this._warn(new Error(`channel version ${line.channel}; this client speaks ${CHANNEL_VERSION}`));
        }
        return this.emit('hello', line);
      case 'role':
        return this._role(line.role, line.leader || null);
      case 'state':
        return this.emit('state', Buffer.from(line.state || '', 'hex'));
      case 'checkpoint':
        this.checkpointId = line.id;
        this.emit('checkpoint', line.id);
        return this.emit('synchronize', line.id);
      case 'checkpoint_held':
        return this.emit('checkpoint_held', line.id);
      case 'run':
        this._tasks.push(line);
        return this._next();
      case 'error':
        return this._warn(new Error(`handover: ${line.error}${line.line ? ` (${line.line})` : ''}`));
      default:
        // A newer handover's line: nothing to do with it.
        return undefined;
    }
  }

  _role(role, leader) {
    const before = this.role;
    this.role = role;
    if (leader !== this.leader) {
      this.leader = leader;
      this.emit('leader', leader);
    }
    if (role === before) return;
    if (before) {
      this._sticky.delete(before);
      this._sticky.delete(MONGOOSE[before]);
    }
    this.emit('role', role, leader);
    this.emit(role, leader);
    this.emit(MONGOOSE[role], leader);
    this.emit('statechange', before && MONGOOSE[before], MONGOOSE[role]);
  }

  _next() {
    if (this._running || this._stopping || !this._handler || this._tasks.length === 0) return;
    const { id, payload } = this._tasks.shift();
    this._running = (async () => {
      let done = false;
      try {
        done = Boolean(await this._handler(payload, id));
      } catch (e) {
        this._warn(e);
      }
      this._send({ cmd: done ? 'done' : 'retry', id });
    })().then(() => {
      this._running = null;
      this._next();
    });
  }

  _takeSignals() {
    if (this._signalsTaken) return;
    this._signalsTaken = true;
    const stop = async () => {
      if (this._stopping) return;
      this._stopping = true;
      if (this._running) await this._running;
      for (const hook of this._hooks) {
        try {
          await hook();
        } catch (e) {
          this._warn(e);
        }
      }
      // What was written reaches handover before the exit.
      this._socket.end(() => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  }
}

function taskId(id) {
  if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`task id ${id}: a whole number from 0`);
  return id;
}

/** Connects to the channel of the `handover run` this process runs under. */
function connect(options) {
  return new Handover(options);
}

/**
 * handover-lib's HandoverPeer, on `handover run`: `startListening(shutdown)`
 * registers the shutdown callback, `startBroadcasting()` says the service is
 * ready. The timestamp and context arguments are accepted and not needed.
 */
class HandoverPeer {
  constructor(_startTime, _context) {
    this._handover = null;
  }

  _connect() {
    if (!this._handover) this._handover = new Handover();
    return this._handover;
  }

  startListening(shutdownCallback) {
    if (shutdownCallback) this._connect().onShutdown(shutdownCallback);
  }

  startBroadcasting() {
    this._connect().ready();
  }
}

module.exports = { connect, Handover, HandoverPeer, CHANNEL_VERSION };
