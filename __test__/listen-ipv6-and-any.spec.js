'use strict';
// IPv6 listen addresses and listen(port) with no host (dual-stack `::`),
// under both policies, with real HTTP over both address families.
const { startFixture, get } = require('./helpers');

async function withApp(env, fn) {
  const app = startFixture('http-server.js', { env: { WORKERS: '2', ...env } });
  try {
    const ready = await app.next((e) => e.ready);
    await fn(ready);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
}

describe.each(['rr', 'none'])('policy %s', (policy) => {
  test('listen(0, "::1") serves over IPv6', async () => {
    await withApp({ HOST: '::1', NODE_CLUSTER_SCHED_POLICY: policy }, async ({ ready, address }) => {
      expect(address).toBe('::1');
      const body = await get(ready, { host: '::1' });
      expect(Number(body)).toBeGreaterThan(0);
    });
  });

  test('listen(0) with no host accepts IPv4 and IPv6 clients', async () => {
    await withApp({ HOST: 'none', NODE_CLUSTER_SCHED_POLICY: policy }, async ({ ready }) => {
      expect(Number(await get(ready, { host: '127.0.0.1' }))).toBeGreaterThan(0);
      expect(Number(await get(ready, { host: '::1' }))).toBeGreaterThan(0);
    });
  });
});
