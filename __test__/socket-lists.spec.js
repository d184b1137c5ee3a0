'use strict';
// Differential: a socket sent to the other process stays counted by the server
// that accepted it (getConnections(), close() wait for it there), a socket
// sent twice goes the second time as the bare message, and plain messages
// sent right after a handle arrive after it.
const { runFixture } = require('./helpers');

describe.each(['json', 'advanced'])('serialization %s', (serialization) => {
  test('servers count the sockets they sent away, both ways, as in node:cluster', async () => {
    const env = { SERIALIZATION: serialization };
    const [node, ours] = await Promise.all([
      runFixture('socket-lists.js', { module: 'node', env }),
      runFixture('socket-lists.js', { module: 'rcluster', env }),
    ]);
    expect(node.code).toBe(0);
    expect(ours.events).toEqual(node.events);
    expect(ours.code).toBe(node.code);
    expect(ours.events).toEqual([
      { primaryGot: 's1', handle: true },
      { primaryGot: 's2', handle: false },
      { primaryGot: 'after', handle: false },
      { workerServerCount: 1 },
      { workerServerClosed: true },
      { workerGot: 'take', handle: true },
      { workerGot: 'after-take', handle: false },
      { primaryServerCount: 1 },
      { primaryServerClosed: true },
    ]);
  });
});
