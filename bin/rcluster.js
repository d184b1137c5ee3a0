#!/usr/bin/env node
'use strict';
// The rcluster command: runs an unmodified server app as N workers under
// rcluster's primary, in the foreground (as gunicorn and Puma do, which
// systemd and Kubernetes expect). See `rcluster --help`. This file reads
// the configuration (flags, environment, configuration file); the
// supervisor it runs is cluster.run() (lib/supervise/run.js).

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { EXIT, PARSE, MAX_INSTANCES } = require('../lib/supervise/run');

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

// Checks a setting's value with the reader cluster.run() will use, so that
// its error names where the value came from (a flag, a variable, the file).
function check(name, value, where) {
  try {
    PARSE[name](value, where);
  } catch (err) {
    throw new UsageError(err.message);
  }
  return value;
}

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

// Each setting: its flag and its environment variable (cluster.run() reads
// the values, as given).
const SETTINGS = {
  instances: { flag: '--instances', env: 'RCLUSTER_INSTANCES' },
  metrics: { flag: '--metrics', env: 'RCLUSTER_METRICS' },
  metricsPerWorker: { flag: '--metrics-per-worker', env: 'RCLUSTER_METRICS_PER_WORKER' },
  health: { flag: '--health', env: 'RCLUSTER_HEALTH' },
  drainDelay: { flag: '--drain-delay', env: 'RCLUSTER_DRAIN_DELAY' },
  shutdownTimeout: { flag: '--shutdown-timeout', env: 'RCLUSTER_SHUTDOWN_TIMEOUT' },
  reloadTimeout: { flag: '--reload-timeout', env: 'RCLUSTER_RELOAD_TIMEOUT' },
  restart: { flag: '--no-restart', env: 'RCLUSTER_RESTART' },
  maxRestarts: { flag: '--max-restarts', env: 'RCLUSTER_MAX_RESTARTS' },
  sched: { flag: '--sched', env: 'RCLUSTER_SCHED' },
  sticky: { flag: '--sticky', env: 'RCLUSTER_STICKY' },
  balance: { flag: '--balance', env: 'RCLUSTER_BALANCE' },
  readyOn: { flag: '--ready-on', env: 'RCLUSTER_READY_ON' },
  killSignal: { flag: '--kill-signal', env: 'RCLUSTER_KILL_SIGNAL' },
  quiet: { flag: '--quiet', env: 'RCLUSTER_QUIET' },
};

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

/** cluster.run()'s options from flags, environment and configuration file (flags win); throws UsageError. */
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
  const settings = {};
  for (const [name, { flag, env: envName }] of Object.entries(SETTINGS)) {
    if (config[name] !== undefined) settings[name] = check(name, config[name], `${from}: ${name}`);
    if (env[envName] !== undefined && env[envName] !== '') settings[name] = check(name, env[envName], envName);
    const flagName = flag.slice(2);
    if (values[flagName] !== undefined) {
      settings[name] = name === 'restart' ? !values[flagName] : check(name, values[flagName], flag);
    }
  }
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])} (app arguments go after --)`);
  }
  const app = positionals[0] ?? config.app;
  if (!app) throw new UsageError('no app given: rcluster [options] <app.js> [-- app arguments]');
  settings.app = app;
  settings.args = appArgs.length ? appArgs : (config.args ?? []);
  if (!Array.isArray(settings.args)) throw new UsageError(`${from}: args: expected an array`);
  return settings;
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
  try {
    require('..').run(settings);
  } catch (err) {
    if (err.exitCode === undefined) throw err;
    process.stderr.write(`rcluster: ${err.message}\n`);
    process.exit(err.exitCode);
  }
}

run();
