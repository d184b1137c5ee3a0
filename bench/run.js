'use strict';
// npm run bench: node:cluster and rcluster side by side, interleaved, several
// rounds; prints medians and rcluster/node:cluster ratios as a markdown table.
//
//   ROUNDS=3 DURATION=5 CONNECTIONS=64 npm run bench
//
// BASELINE=<another rcluster checkout, built> compares this checkout with
// that one instead of with node:cluster (an A/B before and after a change):
// the same workloads, interleaved, every policy on both, without the
// placement scenarios.
//
// HTTP load comes from wrk (Debian/Ubuntu: apt-get install wrk), 2 workers,
// hello-world HTTP on 127.0.0.1.

const { spawn, spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const APP = path.join(__dirname, 'app.js');
const ROUNDS = Number(process.env.ROUNDS || 3);
const DURATION = Number(process.env.DURATION || 5);
const CONNECTIONS = Number(process.env.CONNECTIONS || 64);
const BASELINE = process.env.BASELINE ? path.resolve(process.env.BASELINE) : null;
// The column compared against: node:cluster, or the BASELINE build.
const THEIRS = BASELINE ? 'before' : 'node:cluster';
const MODULES = { [THEIRS]: BASELINE || 'node:cluster', rcluster: ROOT };

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// Runs the app; resolves with the JSON lines it printed. `whileUp(lines)`
// runs once the app reports `ready`; then the app gets SIGTERM.
function runApp(module, env, whileUp) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [APP], {
      env: { ...process.env, ...env, CLUSTER_MODULE: MODULES[module] },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = [];
    let buf = '';
    let started = false;
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${module} ${env.SCENARIO} timed out`)); },
      (DURATION + 60) * 1000);
    child.stdout.on('data', async (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      const ready = lines.find((l) => l.ready);
      if (ready && whileUp && !started) {
        started = true;
        try {
          lines.push(await whileUp(ready));
        } finally {
          child.kill('SIGTERM');
        }
      }
    });
    child.on('close', () => { clearTimeout(timer); resolve(lines); });
  });
}

function wrk(port, close, { threads = 2, connections = CONNECTIONS } = {}) {
  const args = [`-t${threads}`, `-c${connections}`, `-d${DURATION}s`];
  if (close) args.push('-H', 'Connection: close');
  const res = spawnSync('wrk', [...args, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
  const rps = Number((res.stdout.match(/Requests\/sec:\s+([\d.]+)/) || [])[1]);
  const errors = (res.stdout.match(/Socket errors:.*|Non-2xx.*/g) || []).join('; ');
  return { rps, errors };
}

const POLICIES = ['rr', 'none', 'reuseport'];
const POLICY_NAMES = { rr: 'SCHED_RR', none: 'SCHED_NONE', reuseport: 'SCHED_REUSEPORT' };
// node:cluster has no SO_REUSEPORT policy: rcluster's (its default) is
// compared with node's SCHED_NONE and SCHED_RR (node's default).
const modulesFor = (policy, mods) => (policy === 'reuseport' && !BASELINE ? ['rcluster'] : mods);
// Fairness: the busiest worker's request count over the idlest's.
const spread = (counts) => Math.max(...counts) / Math.min(...counts);

// One HTTP run: the app with `workers` workers under `policy`, loaded by wrk.
// Resolves with { rps, counts, rss }; wrk's socket errors go to stderr.
async function httpRun(m, policy, { workers = 2, close, threads, connections }) {
  const lines = await runApp(m, { SCENARIO: 'http', NODE_CLUSTER_SCHED_POLICY: policy, WORKERS: String(workers) },
    async ({ ready }) => ({ wrk: wrk(ready, close, { threads, connections }) }));
  const { rps, errors } = lines.find((l) => l.wrk).wrk;
  const { counts, rss } = lines.find((l) => l.counts) || {};
  if (errors) console.error(`${m} ${POLICY_NAMES[policy]} (${workers} workers): ${errors}`);
  process.stderr.write('.');
  return { rps, counts, rss };
}

// A burst of `n` keep-alive connections at once (as wrk -c64 opens them);
// resolves with how many each worker got.
async function burstRun(m, policy, workers, n = 64) {
  const http = require('node:http');
  const lines = await runApp(m, { SCENARIO: 'http', NODE_CLUSTER_SCHED_POLICY: policy, WORKERS: String(workers) },
    async ({ ready }) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: n });
      await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
        http.get({ host: '127.0.0.1', port: ready, agent }, (res) => { res.resume(); res.on('end', resolve); })
          .on('error', resolve);
      })));
      agent.destroy();
      return { burst: n };
    });
  process.stderr.write('.');
  return (lines.find((l) => l.conns) || {}).conns;
}

// New connection per request from `addresses` client addresses
// (127.0.0.2, ...), `DURATION` seconds, from this process: the load wrk
// cannot make (it has one source address, which sticky would pin to one worker).
async function manyClientsRun(m, sticky, addresses = 40) {
  const http = require('node:http');
  const lines = await runApp(m, { SCENARIO: 'http', WORKERS: '2', HOST: '0.0.0.0', STICKY: sticky ? '1' : '0' },
    async ({ ready }) => {
      const until = Date.now() + DURATION * 1000;
      let done = 0;
      const client = async (i) => {
        const localAddress = `127.0.0.${i + 2}`;
        while (Date.now() < until) {
          await new Promise((resolve) => {
            http.get({ host: '127.0.0.1', port: ready, localAddress, agent: false, headers: { connection: 'close' } }, (res) => {
              res.resume();
              res.on('end', () => { done++; resolve(); });
            }).on('error', resolve);
          });
        }
      };
      await Promise.all(Array.from({ length: addresses }, (_, i) => client(i)));
      return { rps: done / DURATION };
    });
  process.stderr.write('.');
  return lines.find((l) => l.rps).rps;
}

// Long-lived connections (bench/long-lived.js): open connections per worker
// at the end, max/min. `env`: the app's (policy, BALANCE); `opts`: the
// scenario (burst, replace).
async function longLivedRun(m, env, workers, opts) {
  const { longLived } = require('./long-lived');
  const lines = await runApp(m, { SCENARIO: 'http', PID_BODY: '1', WORKERS: String(workers), REPLACE: opts.replace ? '1' : '0', ...env },
    async ({ ready }) => ({ longLived: await longLived(ready, { workers, ...opts }) }));
  process.stderr.write('.');
  return lines.find((l) => l.longLived).longLived.ratio;
}

async function main() {
  const haveWrk = spawnSync('wrk', ['--version']).error === undefined;
  if (!haveWrk) console.error('wrk not found: HTTP workloads skipped (apt-get install wrk)');
  const results = {}; // metric -> module -> [values]
  const add = (metric, module, v) => {
    ((results[metric] ||= {})[module] ||= []).push(v);
  };
  const order = Object.keys(MODULES);
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate who goes first, so drift on a shared machine hits both alike.
    const mods = round % 2 ? [...order].reverse() : order;
    for (const policy of POLICIES) {
      for (const close of [false, true]) {
        if (!haveWrk) continue;
        for (const m of modulesFor(policy, mods)) {
          const { rps, counts, rss } = await httpRun(m, policy, { close });
          const load = close ? 'new connection per request' : 'keep-alive';
          add(`${load} req/s, ${POLICY_NAMES[policy]}`, m, rps);
          if (counts) add(`fairness max/min, ${load}, ${POLICY_NAMES[policy]}`, m, spread(counts));
          if (rss && policy === 'rr' && !close) add('primary RSS MiB (after keep-alive load)', m, rss / 2 ** 20);
        }
      }
    }
    // Light load: one client at a time, 8 workers. Where the kernel wakes
    // every SCHED_NONE worker for each connection and one or two win most.
    for (const policy of POLICIES) {
      if (!haveWrk) continue;
      for (const m of modulesFor(policy, mods)) {
        const { rps, counts } = await httpRun(m, policy, { workers: 8, close: true, threads: 1, connections: 1 });
        add(`light load (8 workers, 1 client) req/s, ${POLICY_NAMES[policy]}`, m, rps);
        if (counts) add(`fairness max/min, light load, ${POLICY_NAMES[policy]}`, m, spread(counts));
      }
    }
    // Long-lived connections: how evenly a burst of 64 spreads.
    for (const workers of BASELINE ? [] : [2, 8]) {
      for (const policy of POLICIES) {
        for (const m of modulesFor(policy, mods)) {
          const conns = await burstRun(m, policy, workers);
          if (conns) add(`connections max/min after a burst of 64 keep-alive, ${workers} workers, ${POLICY_NAMES[policy]}`, m, spread(conns));
        }
      }
    }
    // Long-lived connections placed over time: node:cluster's round-robin,
    // rcluster's default (steering by open connections) and rcluster's
    // SCHED_RR with balance: 'least-connections'.
    for (const workers of BASELINE ? [] : [2, 8]) {
      for (const replace of [false, true]) {
        const name = `open connections max/min, 240 arriving at 60/s, a third closing midway${replace ? ', a worker replaced' : ''}, ${workers} workers`;
        for (const m of mods) {
          add(`${name} (node: SCHED_RR, rcluster: default)`, m, await longLivedRun(m, m === 'rcluster' ? {} : { NODE_CLUSTER_SCHED_POLICY: 'rr' }, workers, { replace }));
        }
        add(`${name} (node: SCHED_RR, rcluster: SCHED_RR least-connections)`, 'rcluster',
          await longLivedRun('rcluster', { NODE_CLUSTER_SCHED_POLICY: 'rr', BALANCE: 'least-connections' }, workers, { replace }));
      }
      add(`open connections max/min after a burst of 64 keep-alive, ${workers} workers (node: SCHED_RR, rcluster: SCHED_RR least-connections)`, 'rcluster',
        await longLivedRun('rcluster', { NODE_CLUSTER_SCHED_POLICY: 'rr', BALANCE: 'least-connections' }, workers, { burst: true, total: 64 }));
    }
    // sticky: 'ip' against rcluster's default placement, 40 client addresses.
    for (const sticky of BASELINE ? [] : round % 2 ? [true, false] : [false, true]) {
      add('40 client addresses, new connection per request req/s, SCHED_REUSEPORT', sticky ? 'rcluster sticky' : 'rcluster', await manyClientsRun('rcluster', sticky));
    }
    for (const m of mods) {
      const ipc = (await runApp(m, { SCENARIO: 'ipc' })).find((l) => l.rttUs);
      add('IPC ping-pong round trip µs', m, ipc.rttUs);
      add('IPC worker → primary msgs/s', m, ipc.upPerSec);
      add('IPC primary → worker msgs/s', m, ipc.downPerSec);
      const fork = await runApp(m, { SCENARIO: 'fork' });
      add('fork 8 workers until all listening ms', m, fork.find((l) => l.forkAllMs).forkAllMs);
      add('killed worker until replacement listening ms', m, fork.find((l) => l.restartMs).restartMs);
      if (m === 'rcluster' && !BASELINE) {
        // rcluster's own restart: true, against node:cluster's fork() in 'exit'.
        const auto = await runApp(m, { SCENARIO: 'fork', AUTO: '1' });
        add('killed worker until replacement listening ms, rcluster restart: true', m, auto.find((l) => l.restartMs).restartMs);
      }
      process.stderr.write('.');
    }
  }
  process.stderr.write('\n');
  const fmt = (v) => (v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(v >= 100 ? 0 : 2));
  console.log(`rcluster benchmark, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores (${os.cpus()[0].model}), ` +
    `Node ${process.version}, ${ROUNDS} rounds, medians; wrk -t2 -c${CONNECTIONS} -d${DURATION}s, 2 workers\n`);
  console.log(BASELINE ? `A/B against ${BASELINE}\n` : '');
  console.log(`| workload | ${THEIRS} | rcluster | ratio rcluster/${BASELINE ? 'before' : 'node'} |`);
  console.log('| --- | ---: | ---: | ---: |');
  const row = (name, theirs, ours) => {
    const [n, r] = [median(theirs), median(ours)];
    console.log(`| ${name} | ${fmt(n)} | ${fmt(r)} | ${(r / n).toFixed(2)}x |`);
  };
  const stickyRows = [];
  for (const [metric, byModule] of Object.entries(results)) {
    if (byModule['rcluster sticky']) {
      stickyRows.push([metric, byModule.rcluster, byModule['rcluster sticky']]);
    } else if (byModule[THEIRS]) {
      row(metric, byModule[THEIRS], byModule.rcluster);
    } else if (metric.includes('SCHED_REUSEPORT')) {
      // node:cluster has no SO_REUSEPORT: against its SCHED_NONE, and against
      // its default SCHED_RR (SCHED_REUSEPORT is rcluster's default).
      for (const pol of ['SCHED_NONE', 'SCHED_RR']) {
        const theirs = (results[metric.replace('SCHED_REUSEPORT', pol)] || {})['node:cluster'];
        if (theirs) row(`${metric} (node: ${pol})`, theirs, byModule.rcluster);
      }
    } else if (metric.includes('least-connections')) {
      // Against node:cluster's round-robin in the same scenario.
      const base = metric.replace(' (node: SCHED_RR, rcluster: SCHED_RR least-connections)', '');
      const theirs = (results[`${base} (node: SCHED_RR, rcluster: default)`] || {})['node:cluster'] ||
        (results[`connections max/min after a burst of 64 keep-alive, ${/(\d) workers/.exec(metric)[1]} workers, SCHED_RR`] || {})['node:cluster'];
      if (theirs) row(metric, theirs, byModule.rcluster);
    } else {
      row(metric, results[metric.replace(', rcluster restart: true', '')]['node:cluster'], byModule.rcluster);
    }
  }
  if (stickyRows.length) {
    console.log("\nsticky: 'ip' against rcluster's default placement (2 workers; the load from this process, 40 source addresses)\n");
    console.log("| workload | rcluster default | rcluster sticky: 'ip' | ratio sticky/default |");
    console.log('| --- | ---: | ---: | ---: |');
    for (const [metric, base, sticky] of stickyRows) {
      const [b, st] = [median(base), median(sticky)];
      console.log(`| ${metric} | ${fmt(b)} | ${fmt(st)} | ${(st / b).toFixed(2)}x |`);
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
