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
