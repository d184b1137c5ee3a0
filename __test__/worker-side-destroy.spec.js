'use strict';
// Differential: a worker ending itself in each way Node offers.
const { runBoth } = require('./helpers');

test('exitedAfterDisconnect and exit (code, signal) when a worker ends itself', async () => {
  const { node, ours } = await runBoth('worker-destroy.js');
  expect(ours.code).toBe(0);
  const sorted = (r) => [...r.events].sort((a, b) => a.how.localeCompare(b.how));
  expect(sorted(ours)).toEqual(sorted(node));
  expect(sorted(ours)).toEqual([
    { how: 'destroy', code: 0, signal: null, eAD: true },
    { how: 'exit', code: 0, signal: null, eAD: false },
    { how: 'kill', code: 0, signal: null, eAD: true },
    { how: 'throw', code: 1, signal: null, eAD: false },
  ]);
});
