'use strict';
// cluster.run(options): the primary as the rcluster command runs it, for
// any app's own primary too: N workers of options.app, supervised; SIGHUP
// and SIGUSR2 reload, SIGTTIN adds a worker and SIGTTOU removes one,
// SIGTERM and SIGINT shut down (a second one stops at once), the parent's
// death shuts down; /metrics, /livez and /readyz when asked; and the
// process exits with the command's codes (EXIT). bin/rcluster.js only reads
// the configuration (flags, environment, file) and calls it.

const fs = require('node:fs');
const path = require('node:path');
const { followStderr, lastWords } = require('./lastwords');
const { kCandidate } = require('./keys');

const EXIT = {
  ok: 0, // stopped by SIGTERM/SIGINT, every worker left in time
  forced: 1, // stopped, but a worker was SIGKILLed at the shutdown deadline
  crashLoop: 2, // the restart limit was reached: the app keeps crashing
  appExited: 3, // every worker exited on its own and restart is off
  usage: 64, // a bad flag, value or configuration (sysexits EX_USAGE)
  noInput: 66, // the app's entry file does not exist (EX_NOINPUT)
};

// More workers than this is a mistake, not a plan (each is a whole Node).
const MAX_INSTANCES = 1024;

const DEFAULTS = {
  instances: 'max', metrics: null, metricsPerWorker: false, health: null, drainDelay: 0, shutdownTimeout: 10000,
  reloadTimeout: 30000, restart: true, maxRestarts: 10, sched: null, sticky: false, balance: null,
  readyOn: 'listening', killSignal: 'SIGTERM', quiet: false,
};

// A bad setting: a TypeError naming it, with the command's exit code for it.
function bad(where, value, expected) {
  const err = new TypeError(`${where}: expected ${expected}, got ${JSON.stringify(value)}`);
  err.code = 'ERR_INVALID_ARG_VALUE';
  err.exitCode = EXIT.usage;
  return err;
}

// A whole number from a flag, the environment (strings) or a config file (numbers); NaN otherwise.
const whole = (v) => (typeof v === 'number' ? v : /^\d+$/.test(String(v)) ? Number(v) : NaN);

function instances(v, where) {
  if (v === 'max') return 'max';
  const n = whole(v);
  if (!Number.isInteger(n) || n < 1) throw bad(where, v, 'a positive integer or "max"');
  if (n > MAX_INSTANCES) throw bad(where, v, `at most ${MAX_INSTANCES} workers`);
  return n;
}

function count(v, where) {
  const n = whole(v);
  if (!Number.isInteger(n) || n < 0) throw bad(where, v, 'a whole number');
  return n;
}

// Milliseconds: a whole number.
function ms(v, where) {
  return count(v, where);
}

function bool(v, where) {
  if (typeof v === 'boolean') return v;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw bad(where, v, '0 or 1');
}

function sched(v, where) {
  if (v === null || ['rr', 'none', 'reuseport'].includes(v)) return v;
  throw bad(where, v, 'one of rr, none, reuseport');
}

function sticky(v, where) {
  if (v === false || v === 'off' || v === 'none' || v === '0' || v === 'false') return false;
  if (v === 'ip') return 'ip';
  throw bad(where, v, 'ip or off');
}

function balance(v, where) {
  if (v === null || v === 'least-connections') return v;
  throw bad(where, v, 'least-connections');
}

function readyOn(v, where) {
  if (v === 'listening' || v === 'message') return v;
  throw bad(where, v, 'listening or message');
}

// A signal name, with or without its SIG prefix: SIGTERM, TERM, SIGINT, ...
function signal(v, where) {
  const name = typeof v === 'string' && !v.startsWith('SIG') ? `SIG${v}` : v;
  if (typeof name === 'string' && require('node:os').constants.signals[name] && name !== 'SIGKILL' && name !== 'SIGSTOP') return name;
  throw bad(where, v, 'a signal name such as SIGTERM or SIGINT');
}

// 'HOST:PORT' (':PORT' alone: every interface).
function hostPort(v, where) {
  if (v === null) return null;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(String(v));
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw bad(where, v, 'HOST:PORT (e.g. 0.0.0.0:9100)');
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

const PARSE = {
  instances, metrics: hostPort, metricsPerWorker: bool, health: hostPort, drainDelay: ms,
  shutdownTimeout: ms, reloadTimeout: ms, restart: bool, maxRestarts: count, sched, sticky,
  balance, readyOn, killSignal: signal, quiet: bool,
};

// The app to run: a file, or a directory as `node <directory>` runs it
// (package.json "main", else index.js). Throws with exit code 66 (EX_NOINPUT).
function resolveApp(app) {
  const missing = (text) => Object.assign(new Error(text), { code: 'ENOENT', exitCode: EXIT.noInput });
  if (typeof app !== 'string' || app === '') throw bad('app', app, 'the path of the app to run');
  const file = path.resolve(app);
  if (!fs.existsSync(file)) throw missing(`no such app file: ${file}`);
  if (!fs.statSync(file).isDirectory()) return file;
  try {
    return require.resolve(file);
  } catch {
    throw missing(`no app in the directory ${file}: it has no package.json "main" and no index.js`);
  }
}

/** Installs cluster.run(); `stopWorker` takes one worker out as a shutdown does. */
function installRun(cluster, stopWorker) {
  cluster.run = function run(options) {
    if (options === null || typeof options !== 'object') throw bad('options', options, 'an object');
    const settings = { ...DEFAULTS };
    for (const [name, value] of Object.entries(options)) {
      if (name === 'app' || name === 'args') continue;
      if (!PARSE[name]) throw bad('options', name, `one of ${Object.keys(PARSE).join(', ')}, app, args`);
      if (value !== undefined) settings[name] = PARSE[name](value, name);
    }
    settings.args = options.args ?? [];
    if (!Array.isArray(settings.args)) throw bad('args', settings.args, 'an array');
    settings.app = resolveApp(options.app);
    // The policy is read when the engine starts (at the first fork).
    if (settings.sched) cluster.schedulingPolicy = cluster[`SCHED_${settings.sched.toUpperCase()}`];
    start(cluster, stopWorker, settings);
  };
}

function start(cluster, stopWorker, settings) {
  const log = settings.quiet ? () => {} : (line) => process.stderr.write(`[rcluster] ${line}\n`);
  const n = settings.instances === 'max' ? cluster.availableParallelism() : settings.instances;
  if (n > 4 * cluster.availableParallelism()) {
    log(`warning: ${n} workers for ${cluster.availableParallelism()} CPU(s); each worker is a whole Node process`);
  }
  cluster.setupPrimary({
    exec: settings.app,
    args: settings.args.map(String),
    restart: settings.restart ? { maxRestarts: settings.maxRestarts } : false,
    // Heartbeats feed the metrics (rss, event-loop delay) and the watchdog.
    heartbeat: { interval: 1000, timeout: 60000 },
    readiness: settings.readyOn === 'message' ? 'ready' : 'listening',
    killSignal: settings.killSignal,
    sticky: settings.sticky || false,
    ...(settings.balance ? { balance: settings.balance } : {}),
    // As a container's PID 1 (or a child subreaper), reap adopted orphans.
    reapOrphans: 'auto',
    // The workers' stderr comes through the primary, which forwards it and
    // keeps the line that names why a worker failed.
    stdio: ['inherit', 'inherit', 'pipe', 'ipc'],
  });
  let stopping = false;
  // Until a worker of this start has been ready, a crash is a boot failure:
  // restarting the same code again would only crash again.
  let booted = false;
  const readyEvent = settings.readyOn === 'message' ? 'ready' : 'listening';
  // The workers ignore a terminal's Ctrl-C (it reaches the whole process
  // group): the primary drains them instead.
  const fork = () => cluster.fork({ RCLUSTER_CLI: '1' });
  const how = (code, signal) => (signal ? `killed by ${signal}` : `exited with code ${code}`);
  const cause = async (worker, code, signal) => {
    const words = await lastWords(worker);
    return `worker ${worker.id} (pid ${worker.process.pid}) ${how(code, signal)}${words ? `: ${words}` : ''}`;
  };

  // Every worker, however forked (here, by the restart policy, by a reload).
  cluster.on('fork', (worker) => {
    if (worker.process.stderr) {
      followStderr(worker, worker.process.stderr);
      worker.process.stderr.pipe(process.stderr, { end: false });
    }
    worker.once(readyEvent, () => { booted = true; });
  });

  cluster.on('exit', (worker, code, signal) => {
    // A reload's replacement that never became ready: the reload says why.
    if (stopping || worker.exitedAfterDisconnect || worker[kCandidate]) return;
    if (!booted) {
      stop(EXIT.crashLoop, cause(worker, code, signal).then((c) => `the app failed to boot: ${c}`));
      return;
    }
    cause(worker, code, signal).then(log);
    if (!settings.restart && Object.values(cluster.workers).every((w) => w.isDead())) {
      stop(EXIT.appExited, Promise.resolve('every worker has exited and restart is off: stopped'));
    }
  });
  cluster.on('restart', (worker, old, { delay }) => log(`worker ${worker.id} replaces worker ${old.id} (after ${delay} ms)`));
  cluster.on('restartLimit', (worker, { code, signal }) => {
    stop(EXIT.crashLoop, cause(worker, code, signal).then((c) =>
      `the app crashed more than ${settings.maxRestarts} times in a minute (the last: ${c}): stopped`));
  });
  cluster.on('unresponsive', (worker) => log(`worker ${worker.id} stopped answering heartbeats: aborting it`));

  const servers = serveProbes(cluster, settings, log);
  const killedAtDeadline = (results, timeout) => {
    for (const r of results.filter((x) => x.forced)) {
      log(`worker ${r.id ?? r.old}${r.pid ? ` (pid ${r.pid})` : ''} had to be killed at the ${timeout} ms deadline`);
    }
  };

  // Shuts down; `last`, a promise of the line that says why, is said last.
  function stop(code, last = null) {
    if (stopping) return;
    stopping = true;
    const drainDelay = code === EXIT.ok ? settings.drainDelay : 0;
    log(`shutting down ${Object.keys(cluster.workers).length} worker(s)${drainDelay ? ` after a ${drainDelay} ms drain delay` : ''}`);
    cluster.shutdown({ timeout: settings.shutdownTimeout, drainDelay }).then(async (results) => {
      killedAtDeadline(results, settings.shutdownTimeout);
      for (const s of servers) s.close();
      if (last) log(await last);
      process.exit(code === EXIT.ok && results.some((r) => r.forced) ? EXIT.forced : code);
    });
  }
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      if (!stopping) return stop(EXIT.ok);
      log(`${sig} again: stopping at once`);
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
      process.exit(EXIT.forced);
    });
  }
  // Started through npm or npx, the signals go to them, not here: when the
  // process that started rcluster is gone, stop as on SIGTERM rather than
  // serve on as an orphan.
  const parent = process.ppid;
  setInterval(() => {
    if (stopping || process.ppid === parent) return;
    log(`the process that started rcluster (pid ${parent}) is gone: shutting down`);
    stop(EXIT.ok);
  }, 500).unref();

  let reloading = false;
  for (const sig of ['SIGHUP', 'SIGUSR2']) {
    process.on(sig, () => {
      if (stopping || reloading) return;
      reloading = true;
      const count = Object.keys(cluster.workers).length;
      log(`${sig}: reloading ${count} worker(s)`);
      cluster.reload({ timeout: settings.reloadTimeout }).then(
        (r) => {
          killedAtDeadline(r, settings.reloadTimeout);
          log(`reloaded: ${r.map((x) => `${x.old}->${x.new}`).join(', ')}`);
        },
        (err) => {
          killedAtDeadline(err.results || [], settings.reloadTimeout);
          log(`reload failed, abandoned: ${err.message}; the workers not yet replaced keep serving`);
        },
      ).finally(() => { reloading = false; });
    });
  }
  process.on('SIGTTIN', () => {
    if (stopping) return;
    const w = fork();
    log(`SIGTTIN: worker ${w.id} added (${Object.keys(cluster.workers).length} now)`);
  });
  process.on('SIGTTOU', () => {
    if (stopping) return;
    // The oldest worker that is not leaving already (nor a reload's
    // replacement on its way): a reload skips it when its turn comes.
    const workers = Object.values(cluster.workers).filter((w) => w.isConnected() && !w[kCandidate]);
    if (workers.length <= 1) return log('SIGTTOU: one worker left; not removing it');
    const w = workers[0];
    stopWorker(w);
    log(`SIGTTOU: worker ${w.id} leaving (${workers.length - 1} left)`);
  });

  log(`${path.relative(process.cwd(), settings.app) || settings.app}: starting ${n} worker(s), primary pid ${process.pid}`);
  for (let i = 0; i < n; i++) fork();
}

// /metrics, /livez and /readyz, on one server when they share an address.
function serveProbes(cluster, settings, log) {
  const http = require('node:http');
  const routes = new Map();
  const want = [];
  if (settings.metrics) want.push([settings.metrics, 'metrics']);
  if (settings.health) want.push([settings.health, 'health']);
  for (const [addr, what] of want) {
    const key = `${addr.host}:${addr.port}`;
    if (!routes.has(key)) routes.set(key, { addr, what: new Set() });
    routes.get(key).what.add(what);
  }
  const servers = [];
  for (const { addr, what } of routes.values()) {
    const server = http.createServer((req, res) => {
      const url = req.url.split('?')[0];
      if (what.has('metrics') && url === '/metrics') {
        // rcluster's series, then the app's prom-client metrics across the workers.
        return cluster.metricsText({ app: true, perWorker: settings.metricsPerWorker }).then((text) => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
          res.end(text);
        }, (err) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`${err.message}\n`);
        });
      }
      if (what.has('health') && (url === '/livez' || url === '/healthz')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('ok\n');
      }
      if (what.has('health') && url === '/readyz') {
        const h = cluster.health();
        res.writeHead(h.ready ? 200 : 503, { 'content-type': 'text/plain' });
        return res.end(h.ready ? 'ready\n' : (h.shuttingDown ? 'shutting down\n' : 'no worker listening\n'));
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    });
    server.on('error', (err) => {
      log(`cannot serve ${[...what].join(' and ')} on ${addr.host}:${addr.port}: ${err.code || err.message}`);
      process.exit(EXIT.usage);
    });
    server.listen(addr.port, addr.host, () => {
      log(`${[...what].join(' and ')} on http://${addr.host}:${server.address().port}`);
    });
    servers.push(server);
  }
  return servers;
}

module.exports = { installRun, EXIT, PARSE, MAX_INSTANCES };
