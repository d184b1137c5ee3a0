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

const kTypes = ['string', 'function', 'number', 'object', 'Function', 'Object', 'boolean', 'bigint', 'symbol'];
const classRegExp = /^([A-Z][a-z0-9]*)+$/;

// The wording of Node's ERR_INVALID_ARG_TYPE: types, then instances, then others.
function ERR_INVALID_ARG_TYPE(name, expected, actual) {
  expected = Array.isArray(expected) ? expected : [expected];
  let msg = `The "${name}" ${name.includes('.') ? 'property' : 'argument'} must be `;
  const types = [];
  const instances = [];
  const other = [];
  for (const value of expected) {
    if (kTypes.includes(value)) types.push(value.toLowerCase());
    else if (classRegExp.test(value)) instances.push(value);
    else other.push(value);
  }
  if (instances.length > 0) {
    const pos = types.indexOf('object');
    if (pos !== -1) {
      types.splice(pos, 1);
      instances.push('Object');
    }
  }
  if (types.length > 0) {
    if (types.length > 2) {
      const last = types.pop();
      msg += `one of type ${types.join(', ')}, or ${last}`;
    } else if (types.length === 2) {
      msg += `one of type ${types[0]} or ${types[1]}`;
    } else {
      msg += `of type ${types[0]}`;
    }
    if (instances.length > 0 || other.length > 0) msg += ' or ';
  }
  if (instances.length > 0) {
    if (instances.length > 2) {
      const last = instances.pop();
      msg += `an instance of ${instances.join(', ')}, or ${last}`;
    } else {
      msg += `an instance of ${instances[0]}`;
      if (instances.length === 2) msg += ` or ${instances[1]}`;
    }
    if (other.length > 0) msg += ' or ';
  }
  if (other.length > 0) {
    if (other.length > 2) {
      const last = other.pop();
      msg += `one of ${other.join(', ')}, or ${last}`;
    } else if (other.length === 2) {
      msg += `one of ${other[0]} or ${other[1]}`;
    } else {
      msg += other[0];
    }
  }
  return makeError(TypeError, 'ERR_INVALID_ARG_TYPE', `${msg}.${describeReceived(actual)}`);
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
const ERR_CHILD_CLOSED_BEFORE_REPLY = () =>
  makeError(Error, 'ERR_CHILD_CLOSED_BEFORE_REPLY', 'Child closed before reply received');
const ERR_INVALID_HANDLE_TYPE = () =>
  makeError(TypeError, 'ERR_INVALID_HANDLE_TYPE', 'This handle type cannot be sent');

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
  ERR_CHILD_CLOSED_BEFORE_REPLY,
  ERR_INVALID_HANDLE_TYPE,
  systemError,
  validateInt32,
  validateObject,
};
