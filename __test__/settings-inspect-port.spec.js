'use strict';
// Differential: inspectPort as a function or a number becomes --inspect-port
// when execArgv has --inspect; windowsHide is accepted; disconnect(cb) with
// no workers calls back.
const { runBoth } = require('./helpers');

test('inspectPort, windowsHide and an empty disconnect behave as in Node', async () => {
  const { node, ours } = await runBoth('inspect.js');
  expect(ours.code).toBe(0);
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toEqual([
    { execArgv: ['--inspect=127.0.0.1:0', '--inspect-port=0'] },
    { execArgv2: ['--inspect=127.0.0.1:0', '--inspect-port=0'] },
    { disconnectCbWithNoWorkers: 0 },
  ]);
});
