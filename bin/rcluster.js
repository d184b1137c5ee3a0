#!/usr/bin/env node
'use strict';
// The rcluster command: runs an unmodified server app as N workers under
// rcluster's primary, in the foreground (as gunicorn and Puma do, which
// systemd and Kubernetes expect). See `rcluster --help`.

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

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

const HELP = `Usage: rcluster [options] <app.js|app.mjs|app.ts|directory> [-- app arguments]

Runs an unmodified server app as N workers sharing its ports, supervised.
A directory runs as \`node <directory>\` would (package.json "main", or index.js).

Options:
  -i, --instances <N|max>     workers to run (default: max, the CPUs this
                              process may use: affinity, cpuset, CPU quota;
                              a warning above 4x that, at most ${MAX_INSTANCES})
      --metrics <host:port>   serve Prometheus metrics at /metrics (":9464"
                              alone listens on every interface)
      --metrics-per-worker    the app's own metrics labelled by worker, not merged
      --health <host:port>    serve /livez and /readyz (may be the metrics port)
      --drain-delay <ms>      on SIGTERM/SIGINT, not ready at once but keep
                              serving this long before draining (default 0)
      --shutdown-timeout <ms> workers still running then are killed (default 10000)
      --reload-timeout <ms>   a new worker must be ready within (default 30000)
      --no-restart            do not replace workers that crash
      --max-restarts <N>      crash restarts within a minute before giving up (default 10)
      --sched <rr|none|reuseport>  scheduling policy (default reuseport)
      --sticky <ip|off>       keep each client address on one worker (for
                              socket.io and other session-bound protocols)
      --balance least-connections  where the primary hands connections out
                              (--sched rr), the next goes to the worker with
                              the fewest open ones
      --ready-on <listening|message>  when a worker is ready (for reload and
                              boot): it listens (default), or it sends the
                              message 'ready' (process.send('ready'), as PM2's
                              wait_ready) for apps that never listen
      --kill-signal <SIG>     the signal a worker being stopped gets, with
                              the disconnect (default SIGTERM; PM2 sends SIGINT)
  -q, --quiet                 no lines from the primary (workers' output stays)
  -c, --config <file>         configuration file (default: rcluster.config.js,
                              .mjs or .json in the current directory, or the
                              "rcluster" key of package.json)
  -h, --help                  this text
  -v, --version               rcluster's version

Environment: RCLUSTER_INSTANCES, RCLUSTER_METRICS, RCLUSTER_HEALTH,
RCLUSTER_DRAIN_DELAY, RCLUSTER_SHUTDOWN_TIMEOUT, RCLUSTER_RELOAD_TIMEOUT,
RCLUSTER_RESTART (0 or 1), RCLUSTER_MAX_RESTARTS, RCLUSTER_SCHED,
RCLUSTER_STICKY, RCLUSTER_BALANCE, RCLUSTER_READY_ON, RCLUSTER_KILL_SIGNAL,
RCLUSTER_METRICS_PER_WORKER (1), RCLUSTER_QUIET (1).
Flags win over the environment, the environment over the configuration file.

Signals: SIGHUP or SIGUSR2 reload every worker (rolling, readiness-gated,
the app's code read again; a replacement that fails abandons the reload and
the old workers keep serving); SIGTTIN adds a worker, SIGTTOU removes one;
SIGTERM or SIGINT shut down gracefully (a second one stops at once). When
the process that started rcluster goes away (npm, npx), it shuts down too.

Exit codes: 0 stopped by a signal, 1 stopped but a worker had to be killed
at the deadline, 2 the app failed to boot (a worker exited before any was
ready) or kept crashing (restart limit), 3 every worker exited and restart
is off, 64 bad usage or configuration, 66 no such app file.
`;

class UsageError extends Error {}

const OPTIONS = {
  instances: { type: 'string', short: 'i' },
  metrics: { type: 'string' },
  'metrics-per-worker': { type: 'boolean' },
  health: { type: 'string' },
  'drain-delay': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'reload-timeout': { type: 'string' },
  'no-restart': { type: 'boolean' },
  'max-restarts': { type: 'string' },
  sched: { type: 'string' },
  sticky: { type: 'string' },
  balance: { type: 'string' },
  'ready-on': { type: 'string' },
  'kill-signal': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

// Each setting: its flag, its environment variable, and how its value is read.
const SETTINGS = {
  instances: { flag: '--instances', env: 'RCLUSTER_INSTANCES', parse: instances },
  metrics: { flag: '--metrics', env: 'RCLUSTER_METRICS', parse: hostPort },
  metricsPerWorker: { flag: '--metrics-per-worker', env: 'RCLUSTER_METRICS_PER_WORKER', parse: bool },
  health: { flag: '--health', env: 'RCLUSTER_HEALTH', parse: hostPort },
  drainDelay: { flag: '--drain-delay', env: 'RCLUSTER_DRAIN_DELAY', parse: ms },
  shutdownTimeout: { flag: '--shutdown-timeout', env: 'RCLUSTER_SHUTDOWN_TIMEOUT', parse: ms },
  reloadTimeout: { flag: '--reload-timeout', env: 'RCLUSTER_RELOAD_TIMEOUT', parse: ms },
  restart: { flag: '--no-restart', env: 'RCLUSTER_RESTART', parse: bool },
  maxRestarts: { flag: '--max-restarts', env: 'RCLUSTER_MAX_RESTARTS', parse: count },
  sched: { flag: '--sched', env: 'RCLUSTER_SCHED', parse: sched },
  sticky: { flag: '--sticky', env: 'RCLUSTER_STICKY', parse: sticky },
  balance: { flag: '--balance', env: 'RCLUSTER_BALANCE', parse: balance },
  readyOn: { flag: '--ready-on', env: 'RCLUSTER_READY_ON', parse: readyOn },
  killSignal: { flag: '--kill-signal', env: 'RCLUSTER_KILL_SIGNAL', parse: signal },
  quiet: { flag: '--quiet', env: 'RCLUSTER_QUIET', parse: bool },
};

const DEFAULTS = {
  instances: 'max', metrics: null, metricsPerWorker: false, health: null, drainDelay: 0, shutdownTimeout: 10000,
  reloadTimeout: 30000, restart: true, maxRestarts: 10, sched: null, sticky: false, balance: null,
  readyOn: 'listening', killSignal: 'SIGTERM', quiet: false,
};

function bad(where, value, expected) {
  return new UsageError(`${where}: expected ${expected}, got ${JSON.stringify(value)}`);
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

function hostPort(v, where) {
  if (v === null) return null;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(String(v));
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw bad(where, v, 'HOST:PORT (e.g. 0.0.0.0:9100)');
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

// Levenshtein distance, for "did you mean".
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

// parseArgs' errors in the command's words: the option named once, plainly.
function parseError(err) {
  const unknown = /^Unknown option '([^']+)'/.exec(err.message);
  if (unknown) {
    const given = unknown[1];
    const names = Object.keys(OPTIONS).map((k) => `--${k}`);
    const bare = given.replace(/^-+/, '').split('=')[0];
    const best = names
      .map((n) => [n, n.slice(2).startsWith(bare) && bare.length >= 3 ? 0 : distance(bare, n.slice(2))])
      .sort((a, b) => a[1] - b[1])[0];
    return `unknown option ${given}${best && best[1] <= 2 ? ` (did you mean ${best[0]}?)` : ''}`;
  }
  const missing = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/.exec(err.message);
  if (missing) return `option ${missing[1]} needs a value`;
  return err.message;
}

async function loadConfig(file) {
  const cwd = process.cwd();
  const candidates = file ? [path.resolve(file)] :
    ['rcluster.config.js', 'rcluster.config.mjs', 'rcluster.config.json'].map((f) => path.join(cwd, f));
  for (const f of candidates) {
    if (!fs.existsSync(f)) {
      if (file) throw new UsageError(`--config: no such file ${JSON.stringify(file)}`);
      continue;
    }
    try {
      if (f.endsWith('.json')) return { from: f, config: JSON.parse(fs.readFileSync(f, 'utf8')) };
      const mod = await import(require('node:url').pathToFileURL(f).href);
      return { from: f, config: mod.default ?? mod };
    } catch (err) {
      throw new UsageError(`${f}: ${err.message}`);
    }
  }
  const pkg = path.join(cwd, 'package.json');
  if (fs.existsSync(pkg)) {
    try {
      const json = JSON.parse(fs.readFileSync(pkg, 'utf8'));
      if (json.rcluster !== undefined) return { from: `${pkg} ("rcluster")`, config: json.rcluster };
    } catch (err) {
      throw new UsageError(`${pkg}: ${err.message}`);
    }
  }
  return { from: null, config: {} };
}

/** Flags, environment and configuration file merged (flags win); throws UsageError. */
async function resolve(argv, env) {
  const split = argv.indexOf('--');
  const own = split < 0 ? argv : argv.slice(0, split);
  const appArgs = split < 0 ? [] : argv.slice(split + 1);
  let parsed;
  try {
    parsed = parseArgs({ args: own, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(parseError(err));
  }
  const { values, positionals } = parsed;
  if (values.help || values.version) return { help: values.help, version: values.version };
  const { from, config } = await loadConfig(values.config);
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new UsageError(`${from}: expected an object`);
  }
  const known = new Set([...Object.keys(SETTINGS), 'app', 'args']);
  for (const key of Object.keys(config)) {
    if (!known.has(key)) throw new UsageError(`${from}: unknown setting ${JSON.stringify(key)}`);
  }
  const settings = { ...DEFAULTS };
  for (const [name, { flag, env: envName, parse }] of Object.entries(SETTINGS)) {
    if (config[name] !== undefined) settings[name] = parse(config[name], `${from}: ${name}`);
    if (env[envName] !== undefined && env[envName] !== '') settings[name] = parse(env[envName], envName);
    const flagName = flag.slice(2);
    if (values[flagName] !== undefined) {
      settings[name] = name === 'restart' ? !values[flagName] : parse(values[flagName], flag);
    }
  }
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])} (app arguments go after --)`);
  }
  const app = positionals[0] ?? config.app;
  if (!app) throw new UsageError('no app given: rcluster [options] <app.js> [-- app arguments]');
  settings.app = path.resolve(app);
  settings.args = appArgs.length ? appArgs : (config.args ?? []);
  if (!Array.isArray(settings.args)) throw new UsageError(`${from}: args: expected an array`);
  return settings;
}

function main(settings) {
  const log = settings.quiet ? () => {} : (line) => process.stderr.write(`[rcluster] ${line}\n`);
  if (settings.sched) process.env.NODE_CLUSTER_SCHED_POLICY = settings.sched;
  const cluster = require('..');
  const { followStderr, lastWords } = require('../lib/supervise/lastwords');
  const { kCandidate } = require('../lib/supervise/keys');
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
    w.disconnect();
    if (!w.isDead()) w.process.kill(settings.killSignal);
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

async function run() {
  let settings;
  try {
    settings = await resolve(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`rcluster: ${err.message}\nTry 'rcluster --help'.\n`);
    process.exit(EXIT.usage);
  }
  if (settings.help) return process.stdout.write(HELP);
  if (settings.version) return process.stdout.write(`${require('../package.json').version}\n`);
  if (!fs.existsSync(settings.app)) {
    process.stderr.write(`rcluster: no such app file: ${settings.app}\n`);
    process.exit(EXIT.noInput);
  }
  if (fs.statSync(settings.app).isDirectory()) {
    // As `node <directory>`: package.json "main", else index.js.
    try {
      settings.app = require.resolve(settings.app);
    } catch {
      process.stderr.write(`rcluster: no app in the directory ${settings.app}: it has no package.json "main" and no index.js\n`);
      process.exit(EXIT.noInput);
    }
  }
  main(settings);
}

run();
