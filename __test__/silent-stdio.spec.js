'use strict';
const { runBoth } = require('./helpers');

test('silent workers write to worker.process.stdout/stderr, then close', async () => {
  const { node, ours } = await runBoth('silent.js');
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events[0]).toEqual({ out: 'to stdout\n', err: 'to stderr\n', code: 0, signal: null, stdin: true });
});

test('stdio slots past the channel (pipe, ignore, an fd) as in node:cluster', async () => {
  const { node, ours } = await runBoth('stdio-extra.js');
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toEqual([
    { slots: ['SocketW', null, 'SocketRW', null, 'SocketRW', null, null], stdin: true, stderr: true },
    { slot6IsFile: true },
    { echoed: 'ping', code: 0, file: 'written to fd 6' },
  ]);
});
