'use strict';
// node -r rcluster/register app.js
//
// Makes every require('cluster') and require('node:cluster') in the app and
// in the libraries it loads return rcluster, and (module.registerHooks, or
// module.register on Node 20) every `import ... from 'node:cluster'` in ES modules, so a library
// that drives cluster in the primary (throng, sticky-session,
// @socket.io/sticky, ...) runs on rcluster unchanged. Workers inherit the
// flag through execArgv; there rcluster is Node's own worker-side cluster anyway.
const Module = require('node:module');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const INDEX = path.join(__dirname, 'index.js');
const OWN = path.join(__dirname, 'lib') + path.sep;
// rcluster's own modules keep Node's cluster.
const isOwn = (parent) => Boolean(parent && parent.filename &&
  (parent.filename === INDEX || parent.filename.startsWith(OWN)));

const load = Module._load;
Module._load = function loadCluster(request, parent, isMain) {
  if ((request === 'cluster' || request === 'node:cluster') && !isOwn(parent)) {
    return load.call(this, INDEX, parent, isMain);
  }
  return load.call(this, request, parent, isMain);
};

const INDEX_URL = pathToFileURL(INDEX).href;
const OWN_URL = pathToFileURL(OWN).href;
if (typeof Module.registerHooks === 'function') {
  // Node >= 22.15: in-thread hooks (Node 26 deprecates module.register, DEP0205).
  Module.registerHooks({
    resolve(specifier, context, nextResolve) {
      if ((specifier === 'cluster' || specifier === 'node:cluster') &&
          context.parentURL !== INDEX_URL && !(context.parentURL || '').startsWith(OWN_URL)) {
        return { url: INDEX_URL, shortCircuit: true };
      }
      return nextResolve(specifier, context);
    },
  });
} else if (typeof Module.register === 'function') {
  Module.register(pathToFileURL(path.join(__dirname, 'lib', 'register-hooks.mjs')), {
    data: { index: INDEX_URL, own: OWN_URL },
  });
}
