// A deliberately tiny MQTT 3.1.1 client over WebSocket for the demo page: CONNECT with
// username/password, SUBSCRIBE and PUBLISH at QoS 0, keepalive pings. Nothing more; real
// applications should use a full client library.
"use strict";

class TinyMqttClient {
  constructor(url, { clientId, username, password, keepaliveSecs = 30 }) {
    this.options = { clientId, username, password, keepaliveSecs };
    this.buffer = new Uint8Array(0);
    this.nextPacketId = 1;
    this.onconnect = () => {};
    this.onmessage = () => {};
    this.onerror = () => {};
    this.onclose = () => {};
    this.socket = new WebSocket(url, "mqtt");
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => this.send(this.connectPacket());
    this.socket.onmessage = (event) => this.receive(new Uint8Array(event.data));
    this.socket.onerror = () => this.onerror("WebSocket error");
    this.socket.onclose = (event) => {
      clearInterval(this.pinger);
      this.onclose(event.code);
    };
  }

  subscribe(filter) {
    const id = this.packetId();
    this.send(packet(0x82, concat(u16(id), utf8(filter), Uint8Array.of(0))));
  }

  publish(topic, message) {
    this.send(packet(0x30, concat(utf8(topic), new TextEncoder().encode(message))));
  }

  close() {
    this.send(Uint8Array.of(0xe0, 0x00));
    this.socket.close();
  }

  connectPacket() {
    const { clientId, username, password, keepaliveSecs } = this.options;
    // flags: username, password, clean session
    const header = concat(utf8("MQTT"), Uint8Array.of(4, 0xc2), u16(keepaliveSecs));
    return packet(0x10, concat(header, utf8(clientId), utf8(username), utf8(password)));
  }

  packetId() {
    const id = this.nextPacketId;
    this.nextPacketId = (id % 0xffff) + 1;
    return id;
  }

  send(bytes) {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(bytes);
  }

  receive(chunk) {
    this.buffer = concat(this.buffer, chunk);
    for (;;) {
      const frame = readFrame(this.buffer);
      if (!frame) return;
      this.buffer = this.buffer.slice(frame.end);
      this.handle(frame.type, frame.flags, frame.body);
    }
  }

  handle(type, flags, body) {
    switch (type) {
      case 2: // CONNACK
        if (body[1] === 0) {
          this.pinger = setInterval(() => this.send(Uint8Array.of(0xc0, 0x00)),
            this.options.keepaliveSecs * 1000 / 2);
          this.onconnect();
        } else {
          this.onerror(`connection refused (return code ${body[1]})`);
        }
        break;
      case 3: { // PUBLISH
        const topicLength = (body[0] << 8) | body[1];
        const topic = new TextDecoder().decode(body.slice(2, 2 + topicLength));
        const qos = (flags >> 1) & 3;
        const payloadStart = 2 + topicLength + (qos > 0 ? 2 : 0);
        this.onmessage(topic, new TextDecoder().decode(body.slice(payloadStart)));
        break;
      }
      case 9: // SUBACK
        if (body[body.length - 1] === 0x80) this.onerror("subscription refused");
        break;
      default: // PINGRESP and anything else: nothing to do
    }
  }
}

function readFrame(bytes) {
  if (bytes.length < 2) return null;
  let length = 0;
  let multiplier = 1;
  let index = 1;
  for (;;) {
    if (index >= bytes.length) return null;
    const digit = bytes[index++];
    length += (digit & 0x7f) * multiplier;
    if ((digit & 0x80) === 0) break;
    multiplier *= 128;
  }
  if (bytes.length < index + length) return null;
  return {
    type: bytes[0] >> 4,
    flags: bytes[0] & 0x0f,
    body: bytes.slice(index, index + length),
    end: index + length,
  };
}

function packet(firstByte, body) {
  const length = [];
  let remaining = body.length;
  do {
    let digit = remaining % 128;
    remaining = Math.floor(remaining / 128);
    if (remaining > 0) digit |= 0x80;
    length.push(digit);
  } while (remaining > 0);
  return concat(Uint8Array.of(firstByte, ...length), body);
}

function utf8(text) {
  const bytes = new TextEncoder().encode(text);
  return concat(u16(bytes.length), bytes);
}

function u16(value) {
  return Uint8Array.of(value >> 8, value & 0xff);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
