// rcluster's supervision in one app: restart with crash-loop protection, a
// hung-worker watchdog, graceful shutdown on SIGTERM/SIGINT, a rolling
// reload on SIGHUP, and metrics on SIGUSR2.
const cluster = require('..');
const http = require('http');

if (cluster.isPrimary) {
  cluster.setupPrimary({
    restart: { maxRestarts: 10, window: 60000, minUptime: 1000 },
    heartbeat: { interval: 1000, timeout: 10000 },
    shutdownOn: ['SIGTERM', 'SIGINT'],
  });
  cluster.on('restart', (worker, old, { code, signal, delay }) =>
    console.log(`worker ${old.id} died (${signal || code}); worker ${worker.id} replaced it after ${delay} ms`));
  cluster.on('restartLimit', () => console.log('crash loop: no more restarts'));
  cluster.on('unresponsive', (worker) => console.log(`worker ${worker.id} hung; aborting it`));
  process.on('SIGHUP', async () => console.log('reloaded', await cluster.reload({ timeout: 10000 })));
  process.on('SIGUSR2', () => console.log(cluster.metrics()));
  for (let i = 0; i < 2; i++) cluster.fork();
} else {
  http.createServer((req, res) => {
    if (req.url === '/crash') process.exit(1);
    if (req.url === '/hang') for (;;) { /* the watchdog will notice */ }
    res.end(`Hello from Worker ${process.pid}\n`);
  }).listen(3000);
}
