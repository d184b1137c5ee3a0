'use strict';
// Differential: listen({ exclusive: true }) in a worker does not involve the primary.
const { startFixture, get } = require('./helpers');

test.each(['node', 'rcluster'])('listen({ exclusive: true }) binds in the worker itself (%s)', async (module) => {
  const app = startFixture('http-server.js', { module, env: { WORKERS: '1', EXCLUSIVE: '1' } });
  try {
    const { ready } = await app.next((e) => e.ready);
    expect(Number(await get(ready))).toBeGreaterThan(0);
    // disconnect() does not close an exclusive server (Node does not track
    // it), so the worker stays: end the app outright.
    expect((await app.stop('SIGKILL')).signal).toBe('SIGKILL');
  } finally {
    app.kill();
  }
});
