'use strict';
// Garbage, a death mid-message and floods from some workers become those
// workers' errors or exits; the primary and its other workers keep serving.
const { startFixture, get, nativeOnly } = require('./helpers');

if (nativeOnly("garbage on the channel throws in node:cluster's primary; the native engine reads channels itself")) return;

test('a misbehaving worker never takes the primary down', async () => {
  const app = startFixture('bad-worker.js');
  try {
    const { ready } = await app.next((e) => e.ready);
    await app.next((e) => e.garbageMessage);
    const errors = app.events.filter((e) => e.garbageError);
    // Bad UTF-8 and two lines that are not JSON: three errors, in order.
    expect(errors).toEqual([
      { garbageError: 'Error', code: 'ERR_IPC_BAD_MESSAGE' },
      { garbageError: 'SyntaxError', code: null },
      { garbageError: 'SyntaxError', code: null },
    ]);
    expect(app.events).toContainEqual({ garbageMessage: { after: 'garbage' } });
    await expect(app.next((e) => e.dyingExit)).resolves.toEqual({ dyingExit: [null, 'SIGKILL'] });
    await expect(app.next((e) => e.flood !== undefined, 20000)).resolves.toEqual({ flood: 50000 });
    await expect(app.next((e) => e.noise !== undefined, 20000)).resolves.toEqual({ noise: 200 });
    for (let i = 0; i < 20; i++) expect(await get(ready)).toBe('alive');
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});
