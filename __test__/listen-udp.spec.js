'use strict';
// Differential: dgram sockets in workers share one socket from the primary.
const { startFixture, udpAsk } = require('./helpers');

const ask = (port, type, text) => udpAsk(port, { type, text });

describe.each(['udp4', 'udp6'])('%s', (type) => {
  test.each(['node', 'rcluster'])('workers bound to port 0 share one port and answer (%s)', async (module) => {
    const app = startFixture('udp.js', { module, env: { UDP_TYPE: type } });
    try {
      const { ready, samePort } = await app.next((e) => e.ready !== undefined);
      expect(samePort).toBe(true);
      expect(app.events.filter((e) => e.listening)).toEqual([
        { listening: { addressType: type, address: type === 'udp4' ? '127.0.0.1' : '::1' } },
        { listening: { addressType: type, address: type === 'udp4' ? '127.0.0.1' : '::1' } },
      ]);
      const answer = await ask(ready, type, 'ping');
      expect(answer).toMatch(/^\d+:ping$/);
      expect((await app.stop('SIGTERM')).code).toBe(0);
    } finally {
      app.kill();
    }
  });
});
