'use strict';
// cluster.run(): the command's supervisor through the library API, in a
// primary of the app's own: bad options throw Node-style errors; SIGTTOU
// takes one worker out as a shutdown does (the app's own SIGTERM handler
// runs); SIGTERM stops with exit code 0.
const path = require('node:path');
const { waitFor } = require('./helpers');
const { FIXTURES, freePort, start, pidsServing, workerCount } = require('./cli-helpers');

test('cluster.run() validates, scales down on SIGTTOU and stops on SIGTERM', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const app = start([], { script: path.join(FIXTURES, 'run-api.js'), env: { PORT: String(port), METRICS_PORT: String(metricsPort) } });
  try {
    expect((await pidsServing(port, 2)).size).toBe(2);
    const said = app.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const of = (k) => said.find((x) => k in x)[k];
    expect(of('zero')).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: 'instances: expected a positive integer or "max", got 0' });
    expect(of('unknown')).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
    expect(of('unknown').message).toMatch(/instancs/);
    expect(of('missing')).toMatchObject({ code: 'ENOENT' });
    expect(await waitFor(async () => (await workerCount(metricsPort)) === 2, 10000)).toBe(true);

    process.kill(app.child.pid, 'SIGTTOU');
    expect(await waitFor(async () => (await workerCount(metricsPort)) === 1, 10000)).toBe(true);
    expect(await waitFor(() => /^SIGTERM \d+$/m.test(app.stdout()), 5000)).toBe(true);

    process.kill(app.child.pid, 'SIGTERM');
    expect(await app.exited).toEqual({ code: 0, signal: null });
  } finally {
    app.kill();
  }
}, 30000);
