'use strict';
// The benchmarked app, the same for node:cluster and rcluster (CLUSTER_MODULE):
//   SCENARIO=http  WORKERS workers serving hello-world HTTP; prints {ready};
//                  on SIGTERM prints {counts, rss} and disconnects.
//   SCENARIO=ipc   ping-pong round trips and message floods both ways.
//   SCENARIO=fork  forks 8 workers until all listen, then kills one and times
//                  its replacement (forked in 'exit') until it listens.
const cluster = require(process.env.CLUSTER_MODULE);
const http = require('node:http');
const fs = require('node:fs');

const report = (o) => fs.writeSync(1, `${JSON.stringify(o)}\n`);
const scenario = process.env.SCENARIO;
const now = () => Number(process.hrtime.bigint()) / 1e6;

if (cluster.isPrimary) {
  if (scenario === 'http') primaryHttp();
  else if (scenario === 'ipc') primaryIpc();
  else if (scenario === 'fork') primaryFork();
} else if (scenario === 'ipc') {
  workerIpc();
} else {
  let count = 0;
  let conns = 0;
  // PID_BODY=1: the answer names the worker, and connections stay open (the
  // long-lived connection scenarios, bench/long-lived.js).
  const body = process.env.PID_BODY === '1' ? `${process.pid}\n` : 'Hello World\n';
  const server = http.createServer((req, res) => {
    count++;
    res.end(body);
  }).on('connection', () => { conns++; }).listen(Number(process.env.PORT || 0), process.env.HOST || '127.0.0.1');
  if (process.env.PID_BODY === '1') server.keepAliveTimeout = 60000;
  process.on('message', (m) => {
    if (m === 'count?') process.send({ count, conns });
  });
}

function primaryHttp() {
  const n = Number(process.env.WORKERS || 2);
  if (process.env.STICKY === '1') cluster.setupPrimary({ sticky: 'ip' });
  if (process.env.BALANCE) cluster.setupPrimary({ balance: process.env.BALANCE });
  // REPLACE=1: a worker that dies is replaced, as Node's docs show.
  if (process.env.REPLACE === '1') {
    cluster.on('exit', (w) => {
      if (!w.exitedAfterDisconnect) cluster.fork();
    });
  }
  let listening = 0;
  cluster.on('listening', (w, address) => {
    if (++listening === n) report({ ready: address.port });
  });
  for (let i = 0; i < n; i++) cluster.fork();
  process.on('SIGTERM', () => {
    const counts = [];
    const conns = [];
    const workers = Object.values(cluster.workers);
    for (const w of workers) {
      w.once('message', (m) => {
        counts.push(m.count);
        conns.push(m.conns);
        if (counts.length === workers.length) {
          report({ counts, conns, rss: process.memoryUsage().rss });
          cluster.disconnect();
        }
      });
      w.send('count?');
    }
  });
}

function primaryIpc() {
  const w = cluster.fork();
  const N = Number(process.env.N || 100000);
  const PINGS = Number(process.env.PINGS || 5000);
  w.once('online', () => {
    // Ping-pong: one message out, one back, PINGS times in sequence.
    let left = PINGS;
    const t0 = now();
    w.on('message', function pong(m) {
      if (m !== 'pong') return;
      if (--left > 0) return w.send('ping');
      w.off('message', pong);
      const rttUs = ((now() - t0) * 1000) / PINGS;
      // Worker -> primary flood.
      let got = 0;
      const t1 = now();
      w.on('message', function flood(msg) {
        if (typeof msg !== 'object' || msg.i === undefined) return;
        if (++got < N) return;
        w.off('message', flood);
        const up = N / ((now() - t1) / 1000);
        // Primary -> worker flood: the worker answers once it has all N.
        const t2 = now();
        w.once('message', () => {
          const down = N / ((now() - t2) / 1000);
          report({ rttUs, upPerSec: up, downPerSec: down, rss: process.memoryUsage().rss });
          w.disconnect();
        });
        for (let i = 0; i < N; i++) w.send({ i });
      });
      w.send('flood');
    });
    w.send('ping');
  });
}

function workerIpc() {
  const N = Number(process.env.N || 100000);
  let got = 0;
  process.on('message', (m) => {
    if (m === 'ping') process.send('pong');
    else if (m === 'flood') for (let i = 0; i < N; i++) process.send({ i });
    else if (typeof m === 'object' && ++got === N) process.send('all');
  });
}

function primaryFork() {
  const n = 8;
  let listening = 0;
  let killedAt = 0;
  const t0 = now();
  cluster.on('listening', () => {
    listening++;
    if (listening === n) {
      report({ forkAllMs: now() - t0 });
      killedAt = now();
      Object.values(cluster.workers)[0].process.kill('SIGKILL');
    } else if (listening === n + 1) {
      report({ restartMs: now() - killedAt });
      cluster.removeAllListeners('exit');
      if (process.env.AUTO) cluster.shutdown({ timeout: 5000 });
      else cluster.disconnect();
    }
  });
  // AUTO=1: rcluster's restart replaces the worker; otherwise the classic
  // fork() in 'exit'.
  if (process.env.AUTO) cluster.setupPrimary({ restart: { minUptime: 0 } });
  else cluster.on('exit', () => cluster.fork());
  for (let i = 0; i < n; i++) cluster.fork();
}
