'use strict';
// Which primary require('rcluster') gives: the native engine where its
// binary loads, else the portable one on node:cluster (lib/portable.js),
// said once on stderr. RCLUSTER_ENGINE=node chooses the portable engine
// (quietly); RCLUSTER_ENGINE=native makes a missing binary an error.

const native = require('./native');

function primary() {
  const want = process.env.RCLUSTER_ENGINE;
  if (want === 'node') return require('./portable');
  if (want !== undefined && want !== '' && want !== 'native') {
    const err = new TypeError(`RCLUSTER_ENGINE must be 'native' or 'node'. Received '${want}'`);
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  if (want === 'native') native.load();
  else if (native.tryLoad() === null) {
    const { platform } = native.error();
    process.stderr.write(`rcluster: no native engine for ${platform}; running on the portable engine (node:cluster). ` +
      'Set RCLUSTER_ENGINE=node to choose it without this line.\n');
    return require('./portable');
  }
  return require('./primary');
}

module.exports = { primary };
