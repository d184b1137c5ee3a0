'use strict';
// Long-lived connections and how evenly they sit on the workers: the load
// the balance scenarios of `npm run bench` and balance.spec.js put on
// bench/app.js (SCENARIO=http PID_BODY=1: each response is the worker's
// pid, and kept alive). Each connection sends one request, learns its
// worker from the answer, and stays open.

const net = require('node:net');

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Opens one keep-alive connection; resolves with { socket, pid } (pid null on failure). */
function openOne(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = '';
    const done = (pid) => {
      clearTimeout(timer);
      resolve({ socket, pid });
    };
    const timer = setTimeout(() => { socket.destroy(); done(null); }, 10000);
    socket.setEncoding('utf8');
    socket.on('error', () => done(null));
    socket.on('data', (d) => {
      buf += d;
      const m = /\r\n\r\n(\d+)\n/.exec(buf);
      if (m) done(Number(m[1]));
    });
    socket.write('GET / HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n');
  });
}

/**
 * Open connections per worker (`workers` of them alive at the end), and
 * max/min of those counts. Scenarios:
 * - `burst`: `total` connections at once;
 * - else `total` connections arriving at `perSec`; at the midpoint every
 *   third open connection closes, and with `replace` the worker of the first
 *   connection is SIGKILLed (its connections die; the app forks a
 *   replacement, which starts empty).
 */
async function longLived(port, { workers, total = 240, perSec = 60, burst = false, replace = false }) {
  const pending = [];
  let killed = null;
  if (burst) {
    for (let i = 0; i < total; i++) pending.push(openOne(port));
  } else {
    const t0 = Date.now();
    for (let i = 0; i < total; i++) {
      pending.push(openOne(port));
      if (i === total / 2) {
        const now = await Promise.all(pending);
        now.forEach((c, j) => {
          if (j % 3 === 0) c.socket.destroy();
        });
        if (replace) {
          killed = now.find((c) => c.pid).pid;
          process.kill(killed, 'SIGKILL');
        }
      }
      await sleep(t0 + ((i + 1) * 1000) / perSec - Date.now());
    }
  }
  const all = await Promise.all(pending);
  await sleep(300); // the killed worker's connections are reset by now
  const counts = new Map();
  for (const c of all) {
    if (c.pid && c.pid !== killed && !c.socket.destroyed) counts.set(c.pid, (counts.get(c.pid) || 0) + 1);
  }
  for (const c of all) c.socket.destroy();
  const values = [...counts.values()];
  while (values.length < workers) values.push(0); // a worker that got none
  return { counts: values, ratio: Math.max(...values) / Math.min(...values) };
}

module.exports = { longLived };
