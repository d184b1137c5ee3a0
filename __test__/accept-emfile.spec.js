'use strict';
// Round-robin accept in the engine when the primary is out of descriptors:
// EMFILE backs off instead of spinning, and the waiting client is served as
// soon as descriptors are free. rcluster only (Node's primary has its own
// EMFILE handling in libuv).
const fs = require('node:fs');
const { startFixture, nativeOnly, get } = require('./helpers');

if (nativeOnly("the accept back-off is in the native engine's round-robin accept loop")) return;

const cpuSeconds = (pid) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in ticks of 1/100 s
};

test('EMFILE in the primary: accept backs off, then the client is served', async () => {
  const app = startFixture('emfile.js');
  try {
    const { pid, port, filled } = await app.next((e) => e.port);
    expect(filled).toBe('EMFILE');
    const reply = get(port, { timeout: 10000 });
    // The connection waits in the backlog while accept fails. A spinning
    // accept loop would burn a whole CPU second here; backing off uses a
    // small fraction of it.
    const before = cpuSeconds(pid);
    await new Promise((r) => setTimeout(r, 1000));
    const burnt = cpuSeconds(pid) - before;
    expect(burnt).toBeLessThan(0.5);
    process.kill(pid, 'SIGCONT');
    await app.next((e) => e.freed);
    expect(await reply).toBe('served\n');
  } finally {
    await app.stop();
  }
});
