'use strict';
// What supervision keeps on each Worker object, under symbols so that a
// Worker's own fields stay Node's.

module.exports = {
  kEnv: Symbol('rcluster.env'), // the env it was forked with (its replacements get the same)
  kForkedAt: Symbol('rcluster.forkedAt'),
  kStreak: Symbol('rcluster.streak'), // quick deaths in its line before it
  kRestarts: Symbol('rcluster.restarts'), // crash restarts in its line before it
  kHeartbeat: Symbol('rcluster.heartbeat'), // the last heartbeat's numbers
  kCandidate: Symbol('rcluster.candidate'), // a reload's replacement, not ready yet
  kSuccessor: Symbol('rcluster.successor'), // the reload's replacement for this worker (on its way or in its place)
  kConnections: Symbol('rcluster.connections'), // open connections, as its worker hook last reported
  kLastWords: Symbol('rcluster.lastWords'), // what it last wrote to stderr that names a cause
};
