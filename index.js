'use strict';
// rcluster: require('rcluster') where you had require('cluster').
//
// In a worker this is Node's own worker-side cluster: the worker is a stock
// Node process speaking Node's protocol to our primary, so every listen() in
// it works unchanged. (Node deletes NODE_UNIQUE_ID from a worker's env at
// startup, so we ask Node which side we are on.) In the primary it is
// lib/primary.js over the Rust engine. In a worker, lib/worker.js adds
// rcluster's small worker API (cluster.worker.ready()).

const nodeCluster = require('node:cluster');

if (nodeCluster.isWorker) require('./lib/worker');

module.exports = nodeCluster.isWorker ? nodeCluster : require('./lib/primary');
