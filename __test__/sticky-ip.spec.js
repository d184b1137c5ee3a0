'use strict';
// setupPrimary({ sticky: 'ip' }): every connection of one client address
// reaches one worker — placed by the kernel (a BPF program hashing the
// source address) under SCHED_REUSEPORT, by the primary's dispatcher under
// SCHED_RR — the addresses spread over all workers, a replacement takes
// over its predecessor's clients, and socket.io with its default transports
// works without @socket.io/sticky. Without sticky the same checks fail.
const { startFixture, runFixture, nativeOnly, get } = require('./helpers');

if (nativeOnly("sticky: 'ip' is placed by the native engine (BPF steering, the SCHED_RR dispatcher)")) return;

const ADDRESSES = Array.from({ length: 40 }, (_, i) => `127.0.0.${i + 2}`);

const getFrom = async (port, localAddress) => Number(await get(port, { localAddress }));

// address -> the set of pids that answered it, over `rounds` new connections each
async function placements(port, rounds = 4) {
  const seen = new Map(ADDRESSES.map((a) => [a, new Set()]));
  for (let r = 0; r < rounds; r++) {
    // A different order each round: round-robin's rotation must not look sticky.
    const order = [...ADDRESSES.slice(r), ...ADDRESSES.slice(0, r)];
    await Promise.all(order.map(async (a) => seen.get(a).add(await getFrom(port, a))));
  }
  return seen;
}

describe.each(['reuseport', 'rr'])('policy %s', (policy) => {
  test('each client address always reaches one worker; the addresses cover every worker; a replacement keeps its clients', async () => {
    const app = startFixture('sticky.js', { env: { STICKY: '1', WORKERS: '4', NODE_CLUSTER_SCHED_POLICY: policy } });
    try {
      const { ready: port, pids } = await app.next((e) => e.ready);
      const seen = await placements(port);
      for (const [a, set] of seen) expect([a, set.size]).toEqual([a, 1]);
      const owner = new Map([...seen].map(([a, set]) => [a, [...set][0]]));
      expect(new Set(owner.values())).toEqual(new Set(pids));
      // Kill the worker of the first address: its replacement gets its clients.
      const victim = owner.get(ADDRESSES[0]);
      process.kill(victim, 'SIGKILL');
      const { replaced } = await app.next((e) => e.replaced);
      const after = await placements(port, 2);
      for (const [a, set] of after) {
        const want = owner.get(a) === victim ? replaced.pid : owner.get(a);
        expect([a, [...set]]).toEqual([a, [want]]);
      }
    } finally {
      app.kill();
    }
  }, 60000);

  test('without sticky, an address reaches several workers (so the check above can fail)', async () => {
    const app = startFixture('sticky.js', { env: { WORKERS: '4', NODE_CLUSTER_SCHED_POLICY: policy } });
    try {
      const { ready: port } = await app.next((e) => e.ready);
      const seen = await placements(port);
      expect([...seen.values()].some((set) => set.size > 1)).toBe(true);
    } finally {
      app.kill();
    }
  }, 60000);
});

describe.each(['reuseport', 'rr'])('socket.io 4, default transports, no @socket.io/sticky, policy %s', (policy) => {
  test('with sticky: every handshake succeeds and every message arrives', async () => {
    const { events, code, stderr } = await runFixture('third-party/socket-io-sticky.js', {
      env: { STICKY: '1', CLIENTS: '16', NODE_CLUSTER_SCHED_POLICY: policy },
      timeout: 40000,
    });
    expect(code).toBe(0);
    const { results } = events.find((e) => e.results) || {};
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.every((r) => r.workers.length === 1)).toBe(true);
    expect(new Set(results.map((r) => r.workers[0])).size).toBe(2);
    expect(results.filter((r) => r.transport === 'websocket').length).toBe(results.length);
    expect(stderr).toBe('');
  }, 45000);

  test('without sticky: clients fail (long-polling requests reach the other worker)', async () => {
    const { events } = await runFixture('third-party/socket-io-sticky.js', {
      env: { CLIENTS: '16', NODE_CLUSTER_SCHED_POLICY: policy },
      timeout: 40000,
    });
    const { results } = events.find((e) => e.results) || {};
    expect(results.filter((r) => !r.ok).length).toBeGreaterThan(0);
  }, 45000);
});

test('sticky takes false or \'ip\'; anything else is ERR_INVALID_ARG_VALUE naming the option', () => {
  const { spawnSync } = require('node:child_process');
  const { ROOT } = require('./helpers');
  const probe = (value) => spawnSync(process.execPath, ['-e', `
    const cluster = require(${JSON.stringify(ROOT)});
    try { cluster.setupPrimary({ exec: 'app.js', sticky: ${value} }); console.log('ok'); }
    catch (e) { console.log(e.name + ' ' + e.code + ' ' + e.message); }`], { encoding: 'utf8' }).stdout.trim();
  expect(probe("'ip'")).toBe('ok');
  expect(probe('false')).toBe('ok');
  expect(probe("'cookie'")).toBe("TypeError ERR_INVALID_ARG_VALUE The property 'options.sticky' must be one of: false, 'ip'. Received 'cookie'");
});
