'use strict';
// cluster.SCHED_REUSEPORT: one SO_REUSEPORT socket per worker, kept by the
// primary, so a replacement worker inherits the socket and its queue.
const net = require('node:net');
const { startFixture, get, alive, waitFor, nativeOnly } = require('./helpers');

if (nativeOnly("SCHED_REUSEPORT is the native engine's policy")) return;

test('every worker serves on one port chosen by port 0', async () => {
  const app = startFixture('http-server.js', { env: { NODE_CLUSTER_SCHED_POLICY: 'reuseport', WORKERS: '2' } });
  try {
    const { ready } = await app.next((e) => e.ready);
    expect(app.events[0]).toEqual({ policy: 3 });
    const pids = new Map();
    // Fresh connections from fresh source ports spread over both sockets.
    for (let i = 0; i < 200; i++) {
      const pid = await get(ready);
      pids.set(pid, (pids.get(pid) || 0) + 1);
    }
    expect(pids.size).toBe(2);
    for (const n of pids.values()) expect(n).toBeGreaterThanOrEqual(40);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});

test('connections made while the only worker restarts are served by its replacement', async () => {
  const app = startFixture('http-server.js', {
    env: { NODE_CLUSTER_SCHED_POLICY: 'reuseport', WORKERS: '1', RESTART: '1' },
  });
  try {
    const { ready } = await app.next((e) => e.ready);
    const oldPid = Number(await get(ready));
    process.kill(oldPid, 'SIGKILL');
    expect(await waitFor(() => !alive(oldPid), 2000)).toBe(true);
    // Nobody is accepting now; the socket the primary kept queues these.
    const bodies = await Promise.all(Array.from({ length: 10 }, () => get(ready, { timeout: 10000 })));
    for (const body of bodies) expect(Number(body)).not.toBe(oldPid);
    expect(new Set(bodies).size).toBe(1);
    await app.next((e) => e.exit === 1);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});

test('a crashed worker\'s socket gets no new connections when no replacement comes: the live worker takes them from the kernel, not from the primary', async () => {
  const app = startFixture('http-server.js', { env: { NODE_CLUSTER_SCHED_POLICY: 'reuseport', WORKERS: '2' } });
  try {
    const { ready } = await app.next((e) => e.ready);
    const pids = new Set();
    for (let i = 0; i < 20 && pids.size < 2; i++) pids.add(Number(await get(ready)));
    expect(pids.size).toBe(2);
    const [dead, live] = [...pids];
    process.kill(dead, 'SIGKILL');
    await app.next((e) => e.exit !== undefined);
    for (let i = 0; i < 40; i++) expect(Number(await get(ready, { timeout: 10000 }))).toBe(live);
    // Steered by the kernel: nothing waited on the dead socket to be taken
    // and handed over by the primary (without steering about half would).
    app.child.kill('SIGWINCH');
    const { dispatched } = await app.next((e) => e.dispatched);
    expect(dispatched).toEqual([[expect.any(Number), 0]]);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});

const refused = (port) => new Promise((resolve) => {
  const c = net.connect(port, '127.0.0.1');
  c.on('connect', () => { c.destroy(); resolve(false); });
  c.on('error', (err) => resolve(err.code === 'ECONNREFUSED'));
});

test.each(['node', 'rcluster'])('%s: once the last worker is gone and none replaces it, clients are refused', async (module) => {
  const app = startFixture('http-server.js', {
    module, env: { NODE_CLUSTER_SCHED_POLICY: module === 'node' ? 'rr' : 'reuseport', WORKERS: '1', KEEP_ALIVE: '1' },
  });
  try {
    const { ready } = await app.next((e) => e.ready);
    const pid = Number(await get(ready));
    process.kill(pid, 'SIGKILL');
    await app.next((e) => e.exit !== undefined);
    // rcluster keeps the socket (and what queues on it) half a second for a
    // replacement, then closes it; Node closes it at once.
    expect(await waitFor(() => refused(ready), 5000)).toBe(true);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});
