'use strict';
// cluster.shutdown() and setupPrimary({ shutdownOn }): in-flight requests on
// open keep-alive connections finish; what does not leave by the deadline is killed.
const http = require('node:http');
const { startFixture, request } = require('./helpers');

test('SIGTERM with shutdownOn: a slow request on a keep-alive connection completes, the primary exits 0', async () => {
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '2', SLOW_MS: '700', SETTINGS: JSON.stringify({ shutdownOn: ['SIGTERM'] }) },
  });
  const agent = new http.Agent({ keepAlive: true });
  try {
    const { ready } = await app.next((e) => e.ready);
    const inflight = request(ready, { path: '/slow', agent });
    await app.next((e) => e.slow); // the request is being handled
    const exited = app.stop('SIGTERM');
    const { body } = await inflight;
    expect(Number(body)).toBeGreaterThan(0);
    expect((await exited).code).toBe(0);
    // Both workers left on purpose (exitedAfterDisconnect), none crashed.
    expect(app.events.filter((e) => e.ev === 'exit').map((e) => [e.id, e.eAD]).sort((a, b) => a[0] - b[0])).toEqual([[1, true], [2, true]]);
  } finally {
    agent.destroy();
    app.kill();
  }
});

test('cluster.shutdown() kills what is still there at the deadline and says so', async () => {
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '2', IGNORE_DISCONNECT: '1', SHUTDOWN_TIMEOUT: '500' },
  });
  try {
    await app.next((e) => e.ready);
    process.kill(app.child.pid, 'SIGUSR1');
    const { shutdown } = await app.next((e) => e.shutdown, 5000);
    expect(shutdown.map((r) => [r.id, r.signal, r.forced])).toEqual([[1, 'SIGKILL', true], [2, 'SIGKILL', true]]);
    expect((await app.exited).code).toBe(0);
  } finally {
    app.kill();
  }
});

test('a worker that crashes while a shutdown drains is not replaced; restart is on again once the shutdown is over', async () => {
  const settings = { restart: { minUptime: 0, backoff: { initial: 0 } } };
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '2', DRAIN_DELAY: '800', FORK_AFTER_SHUTDOWN: '1', SETTINGS: JSON.stringify(settings) },
  });
  try {
    await app.next((e) => e.ready);
    const pids = Object.fromEntries(app.events.filter((e) => e.ev === 'listening').map((e) => [e.id, e.pid]));
    process.kill(app.child.pid, 'SIGUSR1');
    await app.next((e) => e.shuttingDown);
    process.kill(pids[1], 'SIGKILL'); // during the drain: nobody stopped it
    expect(await app.next((e) => e.ev === 'exit' && e.id === 1)).toMatchObject({ signal: 'SIGKILL', eAD: false });
    await app.next((e) => e.shutdown, 5000);
    // The worker forked after the shutdown crashes, and is replaced.
    const after = await app.next((e) => e.ev === 'listening' && e.id === 3);
    process.kill(after.pid, 'SIGKILL');
    const restart = await app.next((e) => e.ev === 'restart', 5000);
    expect(restart).toMatchObject({ old: 3, id: 4 });
    // Nothing replaced worker 1: the restart of worker 3 is the only one.
    expect(app.events.filter((e) => e.ev === 'restart')).toHaveLength(1);
  } finally {
    app.kill();
  }
});
