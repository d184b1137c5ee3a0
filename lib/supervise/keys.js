'use strict';
// What supervision keeps on each Worker object, under symbols so that a
// Worker's own fields stay Node's.

module.exports = {
  kEnv: Symbol('rcluster.env'), // the env it was forked with (its replacements get the same)
  kForkedAt: Symbol('rcluster.forkedAt'),
  kStreak: Symbol('rcluster.streak'), // quick deaths in its line before it
  kRestarts: Symbol('rcluster.restarts'), // crash restarts in its line before it
  kHeartbeat: Symbol('rcluster.heartbeat'), // the last heartbeat's numbers
};
