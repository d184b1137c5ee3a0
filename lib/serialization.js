'use strict';
// Node's `advanced` IPC serialization, as lib/internal/child_process/serialization.js
// does it: v8's serializer with one extra tag for host objects, so Buffers
// and typed arrays travel as themselves and other native objects as plain copies.

const v8 = require('node:v8');
const { isArrayBufferView } = require('node:util/types');

const kArrayBufferViewTag = 0;
const kNotArrayBufferViewTag = 1;

class ChildProcessSerializer extends v8.DefaultSerializer {
  _writeHostObject(object) {
    if (isArrayBufferView(object)) {
      this.writeUint32(kArrayBufferViewTag);
      return super._writeHostObject(object);
    }
    this.writeUint32(kNotArrayBufferViewTag);
    this.writeValue({ ...object });
    return undefined;
  }
}

class ChildProcessDeserializer extends v8.DefaultDeserializer {
  _readHostObject() {
    const tag = this.readUint32();
    if (tag === kArrayBufferViewTag) return super._readHostObject();
    if (tag !== kNotArrayBufferViewTag) throw new Error(`Unknown host object tag ${tag}`);
    return this.readValue();
  }
}

/** One message for the wire: 4-byte big-endian length, then the V8 payload. */
function serialize(message) {
  const ser = new ChildProcessSerializer();
  ser.writeRawBytes(Buffer.allocUnsafe(4));
  ser.writeHeader();
  ser.writeValue(message);
  const buf = ser.releaseBuffer();
  buf.writeUInt32BE(buf.length - 4, 0);
  return buf;
}

/** Every message in a batch of length-prefixed V8 payloads. */
function* deserializeAll(bytes) {
  let at = 0;
  while (at + 4 <= bytes.length) {
    const len = bytes.readUInt32BE(at);
    const des = new ChildProcessDeserializer(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
    des.readHeader();
    yield des.readValue();
  }
}

module.exports = { serialize, deserializeAll };
