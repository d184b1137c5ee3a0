'use strict';
// Runs fixture apps in child processes, under node:cluster or rcluster, and
// collects what they report. Every run is bounded and its process group killed.

const { spawn } = require('node:child_process');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const MODULES = { node: 'node:cluster', rcluster: ROOT };

/**
 * Runs __test__/fixtures/<name> with CLUSTER_MODULE set to the module under test.
 * Lines the fixture prints as JSON become `events`. Resolves with
 * { code, signal, events, stdout, stderr }.
 */
function runFixture(name, { module = 'rcluster', env = {}, timeout = 20000, args = [], spawnOptions = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawnFixture(name, { module, env, args, spawnOptions });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      killGroup(child.pid);
      reject(new Error(`fixture ${name} (${module}) timed out after ${timeout} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeout);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      killGroup(child.pid); // anything the fixture left behind
      const events = [];
      for (const line of stdout.split('\n')) {
        if (line.startsWith('{') || line.startsWith('[')) {
          try { events.push(JSON.parse(line)); } catch { /* not an event line */ }
        }
      }
      resolve({ code, signal, events, stdout, stderr });
    });
  });
}

/** Starts __test__/fixtures/<name> in its own process group, stdout and stderr piped. */
function spawnFixture(name, { module, env, args, spawnOptions }) {
  return spawn(process.execPath, [path.join(__dirname, 'fixtures', name), ...args], {
    env: { ...process.env, CLUSTER_MODULE: MODULES[module], ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so a timeout can kill workers too
    ...spawnOptions,
  });
}

function killGroup(pid) {
  try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
}

/** Whether a pid is still a running (non-zombie) process. */
function alive(pid) {
  try {
    const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Polls `check` every 20 ms until it returns true or `ms` pass. */
async function waitFor(check, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Runs a fixture under node:cluster and under rcluster at once: { node, ours }. */
async function runBoth(name, opts = {}) {
  const [node, ours] = await Promise.all([
    runFixture(name, { ...opts, module: 'node' }),
    runFixture(name, { ...opts, module: 'rcluster' }),
  ]);
  return { node, ours };
}

module.exports = { runFixture, runBoth, killGroup, alive, waitFor, ROOT, MODULES };

/**
 * Starts a fixture and lets the test talk to it while it runs.
 * `next(pred, ms)` resolves with the first reported event matching `pred`;
 * `stop(signal)` signals the primary and resolves with its exit; `kill()` kills the group.
 */
function startFixture(name, { module = 'rcluster', env = {}, args = [], spawnOptions = {} } = {}) {
  const child = spawnFixture(name, { module, env, args, spawnOptions });
  const events = [];
  const waiters = [];
  let buf = '';
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let ev;
      try { ev = JSON.parse(line); } catch { continue; }
      events.push(ev);
      for (const w of [...waiters]) {
        if (w.pred(ev)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(ev);
        }
      }
    }
  });
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  function next(pred, ms = 10000) {
    const found = events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (ev) => { clearTimeout(timer); resolve(ev); } };
      waiters.push(w);
      const timer = setTimeout(() => {
        const i = waiters.indexOf(w);
        if (i >= 0) {
          waiters.splice(i, 1);
          reject(new Error(`no matching event from ${name} within ${ms} ms; got ${JSON.stringify(events)}\n${stderr}`));
        }
      }, ms);
    });
  }
  async function stop(signal = 'SIGTERM', ms = 10000) {
    try { child.kill(signal); } catch { /* gone */ }
    const timer = setTimeout(() => killGroup(child.pid), ms);
    const res = await exited;
    clearTimeout(timer);
    killGroup(child.pid);
    return res;
  }
  return { child, events, next, stop, exited, kill: () => killGroup(child.pid), stderr: () => stderr };
}

/**
 * The tests' one HTTP GET: resolves with { status, headers, body }; rejects
 * with the error, whose `reusedSocket` says it went on a kept-alive
 * connection. Without `agent`, a fresh connection closed after the reply.
 * `port` may be a unix socket path.
 */
function request(port, { host = '127.0.0.1', path: p = '/', agent = false, localAddress, timeout = 5000 } = {}) {
  const http = require('node:http');
  const where = typeof port === 'string' ? { socketPath: port } : { host, port, localAddress };
  return new Promise((resolve, reject) => {
    const headers = agent ? {} : { connection: 'close' };
    const req = http.get({ ...where, path: p, agent, headers, timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', (err) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
  });
}

/** `request()`'s body. */
const get = (port, options) => request(port, options).then((r) => r.body);

/** A TCP port nobody listens on now, on 127.0.0.1. */
const freePort = () => new Promise((resolve) => {
  const s = require('node:net').createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

/** One UDP datagram to 127.0.0.1 (or ::1 for udp6); resolves with the answer. */
function udpAsk(port, { type = 'udp4', text = 'hi', timeout = 5000 } = {}) {
  const dgram = require('node:dgram');
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(type);
    const timer = setTimeout(() => { s.close(); reject(new Error('no UDP answer')); }, timeout);
    s.on('message', (msg) => { clearTimeout(timer); s.close(); resolve(String(msg)); });
    s.send(text, port, type === 'udp6' ? '::1' : '127.0.0.1');
  });
}

module.exports.udpAsk = udpAsk;
module.exports.startFixture = startFixture;
module.exports.get = get;
module.exports.request = request;
module.exports.freePort = freePort;

/** Whether this run is `npm run test:portable` (rcluster on its portable engine). */
const PORTABLE = process.env.RCLUSTER_ENGINE === 'node';

/**
 * A spec about the native engine's internals calls this first and stops when
 * it returns true (`if (nativeOnly('why')) return;`): under the portable
 * engine it registers one skipped test that says why.
 */
function nativeOnly(reason) {
  if (!PORTABLE) return false;
  process.stderr.write(`[test:portable] ${path.basename(expect.getState().testPath || '')}: skipped, native engine only: ${reason}\n`);
  test.skip(`native engine only, skipped under RCLUSTER_ENGINE=node: ${reason}`, () => {});
  return true;
}

module.exports.PORTABLE = PORTABLE;
module.exports.nativeOnly = nativeOnly;
