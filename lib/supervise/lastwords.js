'use strict';
// What a worker last wrote to stderr that names a cause ("Error: listen
// EADDRINUSE: address already in use 127.0.0.1:3000"), for the lines that
// say why a worker failed to boot or a reload failed. Only where the
// worker's stderr is piped to the primary (the rcluster command forwards
// it); elsewhere there is nothing to tell.

const { kLastWords } = require('./keys');

// A thrown error's first line ("TypeError: x is not a function",
// "Error [ERR_MODULE_NOT_FOUND]: Cannot find ..."), else the last line that
// is neither a stack frame, nor code, nor Node's closing "Node.js v24.x".
const ERROR_LINE = /^(?:Uncaught )?(?:[A-Z][A-Za-z]*)?(?:Error|Exception)(?: \[[A-Z0-9_]+\])?: /;
const NOISE = /^(?:\s|Node\.js v\d|node:|\^|\}|$)/;

/** Follows `stream` (the worker's piped stderr) and remembers its telling lines on `worker`. */
function followStderr(worker, stream) {
  let partial = '';
  const seen = { error: null, last: null };
  worker[kLastWords] = seen;
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop().slice(-4096);
    for (const line of lines) {
      const l = line.replace(/\r$/, '');
      if (ERROR_LINE.test(l)) seen.error = l.slice(0, 500);
      else if (!NOISE.test(l)) seen.last = l.slice(0, 500);
    }
  });
}

/**
 * The telling line of `worker`'s stderr once it has ended (waits up to
 * `ms` for the pipe to drain after an exit), or '' when not followed.
 */
async function lastWords(worker, ms = 500) {
  const seen = worker[kLastWords];
  if (!seen) return '';
  const stream = worker.process.stderr;
  if (stream && !stream.readableEnded && !stream.destroyed) {
    await new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        stream.off('end', done);
        stream.off('close', done);
        resolve();
      }
      stream.once('end', done);
      stream.once('close', done);
    });
  }
  return seen.error || seen.last || '';
}

module.exports = { followStderr, lastWords };
