'use strict';
// Node-style errors (`code`, Node's wording) for the checks node:cluster and
// child_process make, so that code matching on `err.code` behaves the same.

const { inspect } = require('node:util');

function makeError(Base, code, message) {
  const err = new Base(message);
  Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  // As Node: the stack and toString() show `TypeError [ERR_X]: message`.
  err.stack = err.stack.replace(`${err.name}:`, `${err.name} [${code}]:`);
  Object.defineProperty(err, 'toString', {
    value() { return `${this.name} [${code}]: ${this.message}`; },
    enumerable: false, writable: true, configurable: true,
  });
  return err;
}

function describeReceived(value) {
  if (value == null) return ` Received ${value}`;
  if (typeof value === 'function') return ` Received function ${value.name}`;
  if (typeof value === 'object') {
    if (value.constructor && value.constructor.name) {
      return ` Received an instance of ${value.constructor.name}`;
    }
    return ` Received ${inspect(value, { depth: -1 })}`;
  }
  let shown = inspect(value, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return ` Received type ${typeof value} (${shown})`;
}

function ERR_INVALID_ARG_TYPE(name, expected, actual) {
  const types = Array.isArray(expected) ? expected : [expected];
  const kind = name.includes('.') ? 'property' : 'argument';
  let list;
  if (types.length === 1) list = `of type ${types[0]}`;
  else list = `one of type ${types.slice(0, -1).join(', ')}, or ${types[types.length - 1]}`;
  return makeError(TypeError, 'ERR_INVALID_ARG_TYPE',
    `The "${name}" ${kind} must be ${list}.${describeReceived(actual)}`);
}

function ERR_INVALID_ARG_VALUE(name, value, reason = 'is invalid') {
  const kind = name.includes('.') ? 'property' : 'argument';
  return makeError(TypeError, 'ERR_INVALID_ARG_VALUE',
    `The ${kind} '${name}' ${reason}. Received ${inspect(value)}`);
}

function ERR_OUT_OF_RANGE(name, range, value) {
  return makeError(RangeError, 'ERR_OUT_OF_RANGE',
    `The value of "${name}" is out of range. It must be ${range}. Received ${inspect(value)}`);
}

const ERR_MISSING_ARGS = (name) =>
  makeError(TypeError, 'ERR_MISSING_ARGS', `The "${name}" argument must be specified`);
const ERR_UNKNOWN_SIGNAL = (signal) =>
  makeError(TypeError, 'ERR_UNKNOWN_SIGNAL', `Unknown signal: ${signal}`);
const ERR_IPC_CHANNEL_CLOSED = () => makeError(Error, 'ERR_IPC_CHANNEL_CLOSED', 'Channel closed');
const ERR_IPC_DISCONNECTED = () =>
  makeError(Error, 'ERR_IPC_DISCONNECTED', 'IPC channel is already disconnected');
const ERR_CHILD_PROCESS_IPC_REQUIRED = (name) => makeError(Error, 'ERR_CHILD_PROCESS_IPC_REQUIRED',
  `Forked processes must have an IPC channel, missing value 'ipc' in ${name}`);
const ERR_INVALID_HANDLE_TYPE = () =>
  makeError(TypeError, 'ERR_INVALID_HANDLE_TYPE', 'This handle type cannot be sent');
const ERR_RCLUSTER_HANDLE_UNSUPPORTED = () => makeError(Error, 'ERR_RCLUSTER_HANDLE_UNSUPPORTED',
  'Sending a handle from the primary to a worker is not supported by rcluster yet');

/** A system error from the engine ({code, errno, syscall, message}) as Node shapes it. */
function systemError(native, extra = {}) {
  const syscall = extra.syscall || native.syscall;
  const err = new Error(`${syscall ? `${syscall} ` : ''}${native.code}${extra.path ? ` ${extra.path}` : ''}`);
  err.errno = native.errno;
  err.code = native.code;
  if (syscall) err.syscall = syscall;
  Object.assign(err, extra);
  return err;
}

function validateInt32(value, name, min = -2147483648, max = 2147483647) {
  if (typeof value !== 'number') throw ERR_INVALID_ARG_TYPE(name, 'number', value);
  if (!Number.isInteger(value)) throw ERR_OUT_OF_RANGE(name, 'an integer', value);
  if (value < min || value > max) throw ERR_OUT_OF_RANGE(name, `>= ${min} && <= ${max}`, value);
}

function validateObject(value, name) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw ERR_INVALID_ARG_TYPE(name, 'object', value);
  }
}

module.exports = {
  ERR_INVALID_ARG_TYPE,
  ERR_INVALID_ARG_VALUE,
  ERR_OUT_OF_RANGE,
  ERR_MISSING_ARGS,
  ERR_UNKNOWN_SIGNAL,
  ERR_IPC_CHANNEL_CLOSED,
  ERR_IPC_DISCONNECTED,
  ERR_CHILD_PROCESS_IPC_REQUIRED,
  ERR_INVALID_HANDLE_TYPE,
  ERR_RCLUSTER_HANDLE_UNSUPPORTED,
  systemError,
  validateInt32,
  validateObject,
};
