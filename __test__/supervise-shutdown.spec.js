'use strict';
// cluster.shutdown() and setupPrimary({ shutdownOn }): in-flight requests on
// open keep-alive connections finish; what does not leave by the deadline is killed.
const http = require('node:http');
const { startFixture } = require('./helpers');

function slowRequest(port, agent) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/slow', agent }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ body, connection: res.headers.connection }));
    }).on('error', reject);
  });
}

test('SIGTERM with shutdownOn: a slow request on a keep-alive connection completes, the primary exits 0', async () => {
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '2', SLOW_MS: '700', SETTINGS: JSON.stringify({ shutdownOn: ['SIGTERM'] }) },
  });
  const agent = new http.Agent({ keepAlive: true });
  try {
    const { ready } = await app.next((e) => e.ready);
    const inflight = slowRequest(ready, agent);
    await new Promise((r) => setTimeout(r, 200)); // the request is being handled
    const exited = app.stop('SIGTERM');
    const { body } = await inflight;
    expect(Number(body)).toBeGreaterThan(0);
    expect((await exited).code).toBe(0);
    expect(app.events.filter((e) => e.ev === 'exit').every((e) => e.eAD === true)).toBe(true);
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
