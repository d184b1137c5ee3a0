// Module resolve hooks for rcluster/register (module.register, Node >= 20.6):
// `import cluster from 'node:cluster'` in an ES module resolves to rcluster,
// except inside rcluster itself.
let INDEX;
let OWN;

export function initialize(data) {
  INDEX = data.index;
  OWN = data.own;
}

export async function resolve(specifier, context, nextResolve) {
  if ((specifier === 'cluster' || specifier === 'node:cluster') &&
      context.parentURL !== INDEX && !(context.parentURL || '').startsWith(OWN)) {
    return { url: INDEX, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
