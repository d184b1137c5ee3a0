'use strict';
// One flow of bench/flows.js, or the same run without it:
// `node flow-app.js <flow> <with|without>`, run from a package directory
// (the cluster module is `require('./')` there). The primary prints its pid
// and exits as soon as the flow is over, so what runs after it is the same
// in both runs.
//
// listen:  one worker; with: it listens on a port (queryServer, then
//          listening), the run ends at the primary's 'listening'; without:
//          it ends at 'online'.
// crash:   one listening worker under `restart`; with: SIGKILLed (by Node's
//          process.kill, not rcluster's), the run ends at the replacement's
//          'fork'; without: it ends at 'listening'.
// exit:    the crash without the restart: one listening worker; with: it
//          is SIGKILLed, the run ends at its 'exit'; without: it ends at
//          'listening'.
// message: one worker; with: it sends a message, the run ends at the
//          primary's 'message'; without: it ends at 'online'.

const cluster = require(process.cwd());

const [flow, variant] = process.argv.slice(2);
const run = variant === 'with';

if (cluster.isPrimary) {
  console.log(`pid ${process.pid}`);
  const end = () => process.exit(0);
  setTimeout(() => {
    console.error(`flow-app: ${flow} ${variant} did not finish in 10 s`);
    process.exit(1);
  }, 10000).unref();
  if (flow === 'crash') cluster.setupPrimary({ restart: { minUptime: 0, backoff: { initial: 0 } } });
  const worker = cluster.fork({ FLOW: flow, FLOW_RUN: run ? '1' : '' });
  if (flow === 'listen') cluster.once(run ? 'listening' : 'online', end);
  if (flow === 'message') (run ? worker : cluster).once(run ? 'message' : 'online', end);
  if (flow === 'crash' || flow === 'exit') {
    cluster.once('listening', () => {
      if (!run) return end();
      if (flow === 'crash') cluster.once('fork', () => end());
      else cluster.once('exit', () => end());
      process.kill(worker.process.pid, 'SIGKILL');
    });
  }
} else {
  const { FLOW, FLOW_RUN } = process.env;
  if (FLOW === 'crash' || FLOW === 'exit' || (FLOW === 'listen' && FLOW_RUN)) require('node:http').createServer().listen(0);
  if (FLOW === 'message' && FLOW_RUN) process.send({ hello: 'primary' });
  setInterval(() => {}, 1000); // alive until the primary ends it
}
