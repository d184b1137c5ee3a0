'use strict';
// `worker.process`: a real ChildProcess (a subclass), for a child that the
// Rust engine spawned and owns. This file owns spawning it (spawnWorker:
// the arguments, stdio, inspect port and the spawn trace, as
// child_process.fork would make them), its process-level events (deliver:
// messages, handles, disconnect, exit, errors), and whether workers keep the
// primary's event loop alive. Constructing one runs Node's own ChildProcess
// constructor, which publishes the process on the 'child_process'
// diagnostics channel, as every fork() does.

const { ChildProcess } = require('node:child_process');
const EventEmitter = require('node:events');
const { deprecate } = require('node:util');
const dgram = require('node:dgram');
const net = require('node:net');
const { constants: { signals } } = require('node:os');
const errors = require('./errors');
const { serialize, deserializeAll } = require('./serialization');
const native = require('./native').load();

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

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
// Node 24 and later trace each spawn on this channel.
const spawnTrace = NODE_MAJOR >= 24 ? require('node:diagnostics_channel').tracingChannel('child_process.spawn') : null;

// As child_process's Control: `child.channel` while connected. Its ref()
// and unref() decide, with the process's own, whether the worker keeps the
// primary's event loop alive.
class Control extends EventEmitter {
  #child;
  #fd;

  constructor(child, fd) {
    super();
    this.#child = child;
    this.#fd = fd;
    this._refd = true;
  }

  ref() {
    this._refd = true;
    this.#child._refChanged();
  }

  unref() {
    this._refd = false;
    this.#child._refChanged();
  }

  get fd() {
    return this.#fd;
  }
}

class WorkerProcess extends ChildProcess {
  constructor(id, spawnfile, spawnargs, serialization = 'json') {
    super();
    // The engine owns the process: Node's process handle is never spawned.
    this._handle = null;
    this._refd = true;
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
    this._socketsSent = new Map();
    this._socketsGot = new Map();
  }

  // Called once the engine has started the process.
  _spawned(pid, fds, channelFd) {
    this.pid = pid;
    this.connected = true;
    this.channel = new Control(this, channelFd);
    if (NODE_MAJOR < 26) {
      // As Node 20-24's setupChannel (removed in Node 26).
      const msg = '_channel is deprecated. Use ChildProcess.channel instead.';
      Object.defineProperty(this, '_channel', {
        __proto__: null,
        get: deprecate(() => this.channel, msg, 'DEP0129'),
        set: deprecate((val) => { this.channel = val; }, msg, 'DEP0129'),
        configurable: true,
        enumerable: false,
      });
    }
    process.nextTick(() => this.emit('spawn'));
    // One entry per stdio index, null where there is no pipe (as ChildProcess).
    this.stdio = fds.map(() => null);
    while (this.stdio.length < 3) this.stdio.push(null);
    fds.forEach((fd, i) => {
      if (fd == null) return;
      // As ChildProcess: stdin is only written; the others are duplex sockets.
      const stream = new net.Socket({ fd, readable: i !== 0, writable: true });
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
    return this._channelClosed(callback);
  }

  // A send on a closed channel: the callback gets ERR_IPC_CHANNEL_CLOSED, or
  // else 'error' is emitted, as Node's. One exception: the engine may know
  // the channel closed a moment before JS does ('disconnect' is on its way,
  // `connected` still true); then, without a callback, only a listener the
  // app added hears of it (the Worker's own forwarder does not count), since
  // the app could not have known.
  _channelClosed(callback) {
    const ex = errors.ERR_IPC_CHANNEL_CLOSED();
    if (typeof callback === 'function') process.nextTick(callback, ex);
    else if (!this.connected || this.listenerCount('error') > 1) process.nextTick(() => this.emit('error', ex));
    return false;
  }

  _send(message, handle, options, callback) {
    if (message === undefined) throw errors.ERR_MISSING_ARGS('message');
    const type = typeof message;
    if (type !== 'string' && type !== 'object' && type !== 'number' && type !== 'boolean') {
      throw errors.ERR_INVALID_ARG_TYPE('message', ['string', 'object', 'number', 'boolean'], message);
    }
    // As child_process: a socket already sent away (no handle left) goes as
    // the bare message.
    if (handle && !(handle instanceof net.Socket && !handle._handle)) {
      return this._sendHandle(message, handle, options, callback);
    }
    return this._afterSend(this._write(message), callback);
  }

  // Serialize here so a message that cannot be serialized throws in the
  // caller, as in Node (circular JSON; functions and symbols for V8).
  // The first message of a tick is written at once (ping-pong latency);
  // the rest of a burst goes to the engine, which writes it in gathered
  // writes off this thread. Handle messages share the same lane, in order.
  _write(message) {
    const now = this._now();
    return this._advanced ?
      this._native.sendBytes(this._id, serialize(message), now) :
      this._native.send(this._id, JSON.stringify(message), now);
  }

  _now() {
    if (this._sentThisTick) return false;
    this._sentThisTick = true;
    process.nextTick(() => { this._sentThisTick = false; });
    return true;
  }

  _afterSend(sent, callback) {
    if (!sent) return this._channelClosed(callback);
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
    if (!this._native.sendHandle(this._id, bytes, fd, this._now())) return this._channelClosed(callback);
    const keepOpen = Boolean(options && options.keepOpen);
    if (type === 'net.Socket' && handle.server) {
      // As child_process: the server now asks this worker about the sockets
      // it sent here before it reports 'close' or a connection count.
      const { key } = extra;
      let list = this._socketsSent.get(key);
      if (!list) {
        list = new SocketListSend(this, key);
        this._socketsSent.set(key, list);
        handle.server._setupWorker(list);
      }
      if (!keepOpen) handle.server._connections--;
    }
    if (type === 'net.Socket' && !keepOpen) {
      const raw = handle._handle;
      raw.onread = () => {};
      handle._handle = null;
      handle.setTimeout(0);
      raw.close();
    }
    if (typeof callback === 'function') process.nextTick(callback, null);
    return true;
  }

  // child_process's internal messages (cmd NODE_*), never a 'message'.
  _sendInternal(message) {
    return this.connected && this._write(message);
  }

  // A socket the worker sent from one of its servers: the worker's server
  // asks how many of them are still open here (`key` is the server's).
  _gotSocket(key, socket) {
    let list = this._socketsGot.get(key);
    if (!list) {
      list = new SocketListReceive(this, key);
      this._socketsGot.set(key, list);
    }
    list.add(socket);
  }

  disconnect() {
    if (!this.connected) {
      this.emit('error', errors.ERR_IPC_DISCONNECTED());
      return;
    }
    // No new messages from here on; 'disconnect' comes when the engine has
    // closed the channel. As Node: `channel` is null from this moment.
    this.connected = false;
    this.channel = null;
    this._refChanged();
    this._native.closeChannel(this._id);
  }

  ref() {
    this._refd = true;
    this._refChanged();
  }

  unref() {
    this._refd = false;
    this._refChanged();
  }

  // Whether this worker keeps the primary's event loop alive, as Node's
  // process handle (until exit) and channel (until disconnect) do.
  _keepsAlive() {
    return (!this._exited && this._refd) || Boolean(this.channel && this.channel._refd);
  }

  _refChanged() {
    updateRef();
  }

  _onDisconnect() {
    this.connected = false;
    this.channel = null;
    this.emit('disconnect');
    this._maybeClose();
  }

  _onExit(code, signal) {
    this._exited = true;
    this.exitCode = code ?? null;
    this.signalCode = signal ?? null;
    this._refChanged();
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

// As child_process's SocketListSend: one per server whose sockets went to
// this worker; the server polls it on close() and getConnections().
class SocketListSend extends EventEmitter {
  constructor(child, key) {
    super();
    this.key = key;
    this.child = child;
    child.once('exit', () => this.emit('exit', this));
  }

  _request(msg, cmd, callback) {
    const { child } = this;
    const onclose = () => {
      child.removeListener('internalMessage', onreply);
      callback(errors.ERR_CHILD_CLOSED_BEFORE_REPLY());
    };
    const onreply = (reply) => {
      if (reply.cmd !== cmd || reply.key !== this.key) return;
      child.removeListener('disconnect', onclose);
      child.removeListener('internalMessage', onreply);
      callback(null, reply);
    };
    if (!child.connected) return onclose();
    child._sendInternal(msg);
    child.once('disconnect', onclose);
    child.on('internalMessage', onreply);
  }

  close(callback) {
    this._request({ cmd: 'NODE_SOCKET_NOTIFY_CLOSE', key: this.key }, 'NODE_SOCKET_ALL_CLOSED', callback);
  }

  getConnections(callback) {
    this._request({ cmd: 'NODE_SOCKET_GET_COUNT', key: this.key }, 'NODE_SOCKET_COUNT', (err, msg) => {
      if (err) return callback(err);
      callback(null, msg.count);
    });
  }
}

// As child_process's SocketListReceive: counts the sockets a worker's server
// sent here and answers that server's questions about them.
class SocketListReceive extends EventEmitter {
  constructor(child, key) {
    super();
    this.connections = 0;
    this.key = key;
    this.child = child;
    const onempty = () => {
      if (child.connected) child._sendInternal({ cmd: 'NODE_SOCKET_ALL_CLOSED', key });
    };
    child.on('internalMessage', (msg) => {
      if (msg.key !== key) return;
      if (msg.cmd === 'NODE_SOCKET_NOTIFY_CLOSE') {
        if (this.connections === 0) onempty();
        else this.once('empty', onempty);
      } else if (msg.cmd === 'NODE_SOCKET_GET_COUNT') {
        if (child.connected) child._sendInternal({ cmd: 'NODE_SOCKET_COUNT', key, count: this.connections });
      }
    });
  }

  add(socket) {
    this.connections++;
    socket.once('close', () => {
      if (--this.connections === 0) this.emit('empty', this);
    });
  }
}

const kDgramState = (socket) => Object.getOwnPropertySymbols(socket)
  .find((sym) => sym.description === 'state symbol');

// The child_process handle type, descriptor and envelope fields of a handle,
// as child_process's handleConversion names them.
function describeHandle(handle) {
  if (handle instanceof net.Socket) {
    // (A socket already sent away never gets here: it goes as the bare message.)
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
function wrapHandle(child, { type, dgramType, key }, fd, emit) {
  if (type === 'net.Socket') {
    const socket = new net.Socket({ fd, readable: true, writable: true });
    if (key !== undefined) child._gotSocket(key, socket);
    emit(socket);
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

// ---------------------------------------------------------------- spawning

// child_process's words for a stdio entry, as the engine lists them (StdioWord).
const STDIO_WORDS = new Set(Object.values(native.StdioWord));

// As child_process.fork: a word becomes [w, w, w, 'ipc']; an array must hold
// 'ipc'. Each entry: one of STDIO_WORDS, or a descriptor (a number).
function stdioArray(stdio, silent) {
  if (typeof stdio === 'string') {
    if (!STDIO_WORDS.has(stdio)) throw errors.ERR_INVALID_ARG_VALUE('stdio', stdio);
    return [stdio, stdio, stdio, 'ipc'];
  }
  if (!Array.isArray(stdio)) return silent ? ['pipe', 'pipe', 'pipe', 'ipc'] : ['inherit', 'inherit', 'inherit', 'ipc'];
  if (!stdio.includes('ipc')) throw errors.ERR_CHILD_PROCESS_IPC_REQUIRED('options.stdio');
  return stdio.map((s, i) => {
    if (s == null) return i < 3 ? 'pipe' : 'ignore';
    if (typeof s === 'string' && STDIO_WORDS.has(s)) return s;
    if (Number.isInteger(s) && s >= 0) return s;
    if (typeof s === 'object' && Number.isInteger(s.fd)) return s.fd;
    throw errors.ERR_INVALID_ARG_VALUE('stdio', s);
  });
}

const kInspectArg = /--inspect(?:-brk|-port)?|--debug-port/;
let debugPortOffset = 1;

function inspectPortFor(settings) {
  const { inspectPort } = settings;
  let port;
  if (typeof inspectPort === 'function') port = inspectPort();
  else if (inspectPort == null) {
    port = process.debugPort + debugPortOffset;
    if (port > 65535) port = port - 65535 + 1024 - 1;
    debugPortOffset++;
  } else port = inspectPort;
  errors.validateInt32(port, 'inspectPort', 0, 65535);
  return port;
}

// Worker processes the engine still reports on: until its event says one is
// gone (exited and disconnected; the engine decides).
const procs = new Map();
let referenced = false;

// Node's primary stays alive while a worker's process or channel is
// referenced (until it exits or disconnects; `worker.process.unref()` and
// `worker.process.channel.unref()` let go), and may exit after the last.
function updateRef() {
  let want = false;
  for (const proc of procs.values()) {
    if (proc._keepsAlive()) {
      want = true;
      break;
    }
  }
  if (want !== referenced) {
    referenced = want;
    native.setRef(want);
  }
}

/**
 * Spawns worker `id` as child_process.fork(settings.exec, settings.args,
 * settings) would, with `env` (the whole environment); returns its
 * WorkerProcess. A failed spawn is its 'error', then 'exit', as in Node.
 */
function spawnWorker(settings, id, env) {
  const execArgv = [...settings.execArgv];
  if (execArgv.some((a) => kInspectArg.test(a)) || kInspectArg.test(process.env.NODE_OPTIONS || '')) {
    execArgv.push(`--inspect-port=${inspectPortFor(settings)}`);
  }
  const file = settings.execPath || process.execPath;
  const args = [...execArgv, settings.exec, ...settings.args].map(String);
  const envList = [];
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined) envList.push(`${k}=${v}`);
  }
  const serialization = settings.serialization || 'json';
  const proc = new WorkerProcess(id, file, [file, ...args], serialization);
  const options = {
    id,
    file,
    args,
    env: envList,
    cwd: settings.cwd,
    uid: settings.uid,
    gid: settings.gid,
    stdio: stdioArray(settings.stdio, settings.silent),
    serialization,
  };
  // As Node 24+'s ChildProcess.prototype.spawn: the 'child_process.spawn'
  // tracing channel sees start, then end or error.
  const trace = spawnTrace && spawnTrace.hasSubscribers ? spawnTrace : null;
  if (trace) {
    trace.start.publish({ process: proc, options: { ...options, args: [file, ...args], envPairs: envList } });
  }
  const res = native.spawn(options);
  if (res.error) {
    // As ChildProcess: a spawn failure is an 'error' event, then 'exit' with the errno.
    const err = errors.systemError(res.error, {
      syscall: `spawn ${file}`, path: file, spawnargs: args,
    });
    if (trace) trace.error.publish({ process: proc, error: err });
    process.nextTick(() => {
      proc.emit('error', err);
      proc._onExit(res.error.errno, null);
    });
    return proc;
  }
  proc._spawned(res.pid, res.fds, res.channelFd);
  procs.set(id, proc);
  updateRef();
  if (trace) trace.end.publish({ process: proc });
  return proc;
}

// ---------------------------------------------------------------- events

// A 'message' listener threw mid-read: the error, and the messages after it
// (still to be delivered, as Node delivers each in its own tick).
class Interrupted {
  constructor(error, rest) {
    this.error = error;
    this.rest = rest;
  }
}

function emitMessages(proc, id, messages) {
  for (let i = 0; i < messages.length; i++) {
    try {
      proc.emit('message', messages[i], undefined);
    } catch (error) {
      throw new Interrupted(error, { kind: 'parsed', id, messages: messages.slice(i + 1) });
    }
  }
}

// Bad bytes from a worker (JSON or V8 that does not parse) are returned,
// for the primary to report as that worker's error.
class BadBytes {
  constructor(error) {
    this.error = error;
  }
}

function decode(fn) {
  try {
    return fn();
  } catch (err) {
    return new BadBytes(err);
  }
}

/**
 * One engine event of worker process `proc`'s own (messages, handles,
 * internal messages, disconnect, exit, errors). Returns an error the worker
 * caused (bad bytes, a failed read), for the primary to report, else null;
 * a 'message' listener that throws comes out as an Interrupted.
 */
function deliver(proc, ev) {
  if (ev.gone) {
    procs.delete(ev.id);
    updateRef();
  }
  let messages;
  switch (ev.kind) {
    // One message the engine could not vouch for: JS's parse decides.
    case 'message': messages = decode(() => [JSON.parse(ev.data)]); break;
    // A listener may disconnect or kill the worker mid-batch; Node would
    // still deliver what it had read, and so do we.
    case 'messages': messages = decode(() => JSON.parse(ev.data)); break;
    case 'parsed': messages = ev.messages; break;
    case 'messagesV8': messages = decode(() => [...deserializeAll(ev.bytes)]); break;
    case 'handleMessage': {
      const envelope = decode(() => (ev.bytes ? [...deserializeAll(ev.bytes)][0] : JSON.parse(ev.data)));
      if (envelope instanceof BadBytes) {
        require('node:fs').closeSync(ev.fd);
        return envelope.error;
      }
      wrapHandle(proc, envelope, ev.fd, (handle) => proc.emit('message', envelope.msg, handle));
      return null;
    }
    case 'internal':
      proc.emit('internalMessage', ev.message);
      return null;
    case 'disconnect':
      proc._onDisconnect();
      return null;
    case 'exit':
      proc._onExit(ev.code, ev.signal);
      return null;
    case 'error':
      return errors.systemError(ev.error);
    default:
      return null;
  }
  if (messages instanceof BadBytes) return messages.error;
  emitMessages(proc, ev.id, messages);
  return null;
}

module.exports = { WorkerProcess, spawnWorker, stdioArray, deliver, Interrupted };
