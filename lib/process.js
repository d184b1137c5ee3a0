'use strict';
// `worker.process`: the ChildProcess surface apps use, for a child that the
// Rust engine spawned and owns. The engine's events drive it.

const EventEmitter = require('node:events');
const dgram = require('node:dgram');
const net = require('node:net');
const { constants: { signals } } = require('node:os');
const errors = require('./errors');
const { serialize } = require('./serialization');

const signalNames = Object.fromEntries(Object.entries(signals).map(([k, v]) => [v, k]));

// As child_process's convertToValidSignal.
function convertToValidSignal(signal) {
  if (typeof signal === 'number' && signalNames[signal]) return signal;
  if (typeof signal === 'string') {
    const n = signals[signal.toUpperCase()];
    if (n) return n;
  }
  throw errors.ERR_UNKNOWN_SIGNAL(signal);
}

class WorkerProcess extends EventEmitter {
  constructor(native, id, spawnfile, spawnargs, serialization = 'json') {
    super();
    this._advanced = serialization === 'advanced';
    this._native = native;
    this._id = id;
    this.pid = undefined;
    this.connected = false;
    this.exitCode = null;
    this.signalCode = null;
    this.killed = false;
    this.spawnfile = spawnfile;
    this.spawnargs = spawnargs;
    this.stdin = null;
    this.stdout = null;
    this.stderr = null;
    this.stdio = [null, null, null, null];
    this._openStdio = 0;
    this._exited = false;
    this._closed = false;
  }

  // Called once the engine has started the process.
  _spawned(pid, fds) {
    this.pid = pid;
    this.connected = true;
    fds.forEach((fd, i) => {
      if (fd == null) return;
      const stream = new net.Socket({ fd, readable: i !== 0, writable: i === 0 });
      if (i !== 0) {
        this._openStdio++;
        stream.once('close', () => {
          this._openStdio--;
          this._maybeClose();
        });
      }
      this.stdio[i] = stream;
    });
    [this.stdin, this.stdout, this.stderr] = this.stdio;
  }

  kill(sig) {
    const signal = sig === 0 ? sig : convertToValidSignal(sig === undefined ? 'SIGTERM' : sig);
    // As Node: after exit the handle is gone and kill() reports false.
    if (this._exited || this.pid === undefined) return false;
    const res = this._native.kill(this._id, signal);
    if (res === true) {
      this.killed = true;
      return true;
    }
    if (res === false) return false; // ESRCH: already dead.
    const err = errors.systemError(res, { syscall: 'kill' });
    if (res.code === 'EINVAL' || res.code === 'ENOSYS') throw err;
    this.emit('error', err);
    return false;
  }

  send(message, handle, options, callback) {
    if (typeof handle === 'function') {
      callback = handle;
      handle = undefined;
      options = undefined;
    } else if (typeof options === 'function') {
      callback = options;
      options = undefined;
    } else if (options !== undefined) {
      errors.validateObject(options, 'options');
    }
    if (this.connected) return this._send(message, handle, options, callback);
    const ex = errors.ERR_IPC_CHANNEL_CLOSED();
    if (typeof callback === 'function') process.nextTick(callback, ex);
    else process.nextTick(() => this.emit('error', ex));
    return false;
  }

  _send(message, handle, options, callback) {
    if (message === undefined) throw errors.ERR_MISSING_ARGS('message');
    const type = typeof message;
    if (type !== 'string' && type !== 'object' && type !== 'number' && type !== 'boolean') {
      throw errors.ERR_INVALID_ARG_TYPE('message', ['string', 'object', 'number', 'boolean'], message);
    }
    if (handle) return this._sendHandle(message, handle, options, callback);
    // Serialize here so a message that cannot be serialized throws in the
    // caller, as in Node (circular JSON; functions and symbols for V8).
    // The first message of a tick is written at once (ping-pong latency);
    // the rest of a burst goes to the engine, which writes it in gathered
    // writes off this thread.
    const now = !this._sentThisTick;
    if (now) {
      this._sentThisTick = true;
      process.nextTick(() => { this._sentThisTick = false; });
    }
    const sent = this._advanced ?
      this._native.sendBytes(this._id, serialize(message), now) :
      this._native.send(this._id, JSON.stringify(message), now);
    if (!sent) {
      // The worker closed the channel a moment ago; 'disconnect' is on its way.
      const ex = errors.ERR_IPC_CHANNEL_CLOSED();
      if (typeof callback === 'function') process.nextTick(callback, ex);
      else if (this.listenerCount('error') > 0) process.nextTick(() => this.emit('error', ex));
      return false;
    }
    if (typeof callback === 'function') process.nextTick(callback, null);
    return true;
  }

  // As child_process: the message travels in a NODE_HANDLE envelope with the
  // handle's descriptor attached; the engine keeps its own copy until the
  // worker acknowledges it. A net.Socket is detached here unless keepOpen.
  _sendHandle(message, handle, options, callback) {
    const { type, fd, extra } = describeHandle(handle);
    const envelope = { cmd: 'NODE_HANDLE', type, msg: message, ...extra };
    const bytes = this._advanced ? serialize(envelope) : Buffer.from(`${JSON.stringify(envelope)}\n`);
    if (!this._native.sendHandle(this._id, bytes, fd)) {
      const ex = errors.ERR_IPC_CHANNEL_CLOSED();
      if (typeof callback === 'function') process.nextTick(callback, ex);
      return false;
    }
    if (type === 'net.Socket' && !(options && options.keepOpen)) {
      const raw = handle._handle;
      raw.onread = () => {};
      handle._handle = null;
      handle.setTimeout(0);
      raw.close();
    }
    if (typeof callback === 'function') process.nextTick(callback, null);
    return true;
  }

  disconnect() {
    if (!this.connected) {
      this.emit('error', errors.ERR_IPC_DISCONNECTED());
      return;
    }
    // No new messages from here on; 'disconnect' comes when the engine has closed the channel.
    this.connected = false;
    this._native.closeChannel(this._id);
  }

  ref() {}

  unref() {}

  _onDisconnect() {
    this.connected = false;
    this.emit('disconnect');
    this._maybeClose();
  }

  _onExit(code, signal) {
    this._exited = true;
    this.exitCode = code ?? null;
    this.signalCode = signal ?? null;
    if (this.stdin) this.stdin.destroy();
    this.emit('exit', this.exitCode, this.signalCode);
    this._maybeClose();
  }

  // As ChildProcess: 'close' once the process exited and its stdio and channel are closed.
  _maybeClose() {
    if (this._closed || !this._exited || this.connected || this._openStdio > 0) return;
    this._closed = true;
    this.emit('close', this.exitCode, this.signalCode);
  }
}

const kDgramState = (socket) => Object.getOwnPropertySymbols(socket)
  .find((sym) => sym.description === 'state symbol');

// The child_process handle type, descriptor and envelope fields of a handle,
// as child_process's handleConversion names them.
function describeHandle(handle) {
  if (handle instanceof net.Socket) {
    if (!handle._handle) throw errors.ERR_INVALID_HANDLE_TYPE();
    const extra = handle.server ? { key: handle.server._connectionKey } : {};
    return { type: 'net.Socket', fd: handle._handle.fd, extra };
  }
  if (handle instanceof net.Server) {
    if (!handle._handle) throw errors.ERR_INVALID_HANDLE_TYPE();
    return { type: 'net.Server', fd: handle._handle.fd, extra: {} };
  }
  if (handle instanceof dgram.Socket) {
    const state = handle[kDgramState(handle)];
    if (!state || !state.handle) throw errors.ERR_INVALID_HANDLE_TYPE();
    return { type: 'dgram.Socket', fd: state.handle.fd, extra: { dgramType: handle.type } };
  }
  throw errors.ERR_INVALID_HANDLE_TYPE();
}

// Builds the JS object for a descriptor a worker sent, as child_process's
// handleConversion[type].got does, and passes it to `emit`.
function wrapHandle(type, dgramType, fd, emit) {
  if (type === 'net.Socket') {
    emit(new net.Socket({ fd, readable: true, writable: true }));
  } else if (type === 'net.Server') {
    const server = net.createServer();
    server.listen({ fd }, () => emit(server));
  } else if (type === 'dgram.Socket') {
    const socket = dgram.createSocket(dgramType || 'udp4');
    socket.bind({ fd }, () => emit(socket));
  } else {
    require('node:fs').closeSync(fd);
    emit(undefined);
  }
}

module.exports = { WorkerProcess, convertToValidSignal, wrapHandle };
