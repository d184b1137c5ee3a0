'use strict';
// PR_SET_PDEATHSIG: a SIGKILLed primary takes even hung workers with it.
const { startFixture, alive, waitFor, nativeOnly } = require('./helpers');

if (nativeOnly("PR_SET_PDEATHSIG is set by the native engine's spawn")) return;

test('no worker outlives a SIGKILLed primary', async () => {
  const app = startFixture('orphan.js');
  try {
    const { pids } = await app.next((e) => e.pids);
    expect(pids).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 200)); // let the workers hang
    for (const pid of pids) expect(alive(pid)).toBe(true);
    process.kill(app.child.pid, 'SIGKILL');
    const gone = await waitFor(() => pids.every((pid) => !alive(pid)), 1000);
    expect(gone).toBe(true);
  } finally {
    app.kill();
  }
});
