'use strict';
// Differential: how a worker ended reaches 'exit' as Node reports it.
const { runBoth } = require('./helpers');

test('exit carries (code, signal) and kill() results as in node:cluster', async () => {
  const { node, ours } = await runBoth('kill.js');
  expect(ours.code).toBe(0);
  const exits = (r) => r.events.filter((e) => e.id).sort((a, b) => a.id - b.id);
  expect(exits(ours)).toEqual(exits(node));
  expect(exits(ours)).toEqual([
    { id: 1, code: null, signal: 'SIGTERM', eAD: false, isDead: true, killed: true, exitCode: null, signalCode: 'SIGTERM' },
    { id: 2, code: null, signal: 'SIGKILL', eAD: false, isDead: true, killed: true, exitCode: null, signalCode: 'SIGKILL' },
    { id: 3, code: null, signal: 'SIGKILL', eAD: false, isDead: true, killed: true, exitCode: null, signalCode: 'SIGKILL' },
    { id: 4, code: 3, signal: null, eAD: false, isDead: true, killed: false, exitCode: 3, signalCode: null },
  ]);
  const other = (r) => r.events.filter((e) => !e.id && !e.seen);
  expect(other(ours)).toEqual(other(node));
  // Every worker both exits and disconnects, in either order (Node allows both).
  const seen = ours.events.find((e) => e.seen).seen;
  for (const id of ['1', '2', '3', '4']) expect(seen[id].sort()).toEqual(['disconnect', 'exit']);
});
