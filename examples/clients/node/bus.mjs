// The aitrados bus protocol (docs/protocol.md, protocol version 1) in Node.js:
// an RPC client, a service worker, a publisher and a subscriber with gap detection.
// Written from docs/protocol.md alone; npm packages `zeromq` (v6) and `@msgpack/msgpack`.

import { readFileSync } from "node:fs";
import os from "node:os";
import { randomBytes } from "node:crypto";
import * as zmq from "zeromq";
import { decode, encode } from "@msgpack/msgpack";

export const CLIENT_TAG = Buffer.from("ATC1");
export const WORKER_TAG = Buffer.from("ATW1");
export const REQUEST = Buffer.from([0x01]);
export const REPLY = Buffer.from([0x02]);
export const ERROR = Buffer.from([0x03]);
export const READY = Buffer.from([0x04]);
export const HEARTBEAT = Buffer.from([0x05]);
export const DISCONNECT = Buffer.from([0x06]);
export const META_VERSION = 1;

// Bodies: integers beyond 32 bits decode as BigInt so values above 2^53 stay exact.
export const pack = (obj) => Buffer.from(encode(obj, { useBigInt64: true }));
export const unpack = (buf) => decode(buf, { useBigInt64: true });

/** Sends frames on *sock* one message at a time (zeromq.js allows a single send in progress). */
export function serialSender(sock) {
  let chain = Promise.resolve();
  return (frames) => {
    const p = chain.then(() => sock.send(frames));
    chain = p.catch(() => {});
    return p;
  };
}

/** CURVE options for a client socket from the files `aitrados keygen` writes (ZPL certificates, Z85 keys). */
export function curveOptions(serverPublicFile, clientSecretFile) {
  const key = (file, field) => {
    const m = readFileSync(file, "utf8").match(new RegExp(`${field}\\s*=\\s*"([^"]{40})"`));
    if (!m) throw new Error(`${file} holds no ${field}`);
    return m[1];
  };
  return {
    curveServerKey: key(serverPublicFile, "public-key"),
    curvePublicKey: key(clientSecretFile, "public-key"),
    curveSecretKey: key(clientSecretFile, "secret-key"),
  };
}

/** An RPC error reply: `type` and `message` from the ERROR body. */
export class RPCError extends Error {
  constructor(body) {
    super(`${body.type}: ${body.message}`);
    this.type = body.type;
    this.body = body;
  }
}

/** RPC client: one DEALER to the frontend; many calls in flight, matched by request id. */
export class RPCClient {
  constructor(address, { curve = {}, timeoutMs = 10000 } = {}) {
    this.sock = new zmq.Dealer({ linger: 0, ...curve });
    this.sock.connect(address);
    this.send = serialSender(this.sock);
    this.timeoutMs = timeoutMs;
    this.next = 1n;
    this.pending = new Map();
    this.loop = this.#receive();
  }

  async #receive() {
    try {
      for await (const frames of this.sock) {
        if (frames.length !== 5 || !frames[0].equals(CLIENT_TAG)) continue; // not ours: drop
        const waiter = this.pending.get(frames[3].toString("hex"));
        if (!waiter) continue; // a late reply nobody waits for
        this.pending.delete(frames[3].toString("hex"));
        const body = unpack(frames[4]);
        if (frames[1].equals(REPLY)) waiter.resolve(body);
        else waiter.reject(new RPCError(body));
      }
    } catch (err) {
      if (!this.sock.closed) throw err;
    }
  }

  /** Send raw frames 2..4 (service, request id, body); resolves with the reply body. */
  rawCall(service, rid, body, timeoutMs = this.timeoutMs) {
    return new Promise((resolve, reject) => {
      const key = rid.toString("hex");
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(Object.assign(new Error(`no reply from ${service} within ${timeoutMs} ms`), { code: "TIMEOUT" }));
      }, timeoutMs);
      this.pending.set(key, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.send([CLIENT_TAG, REQUEST, Buffer.from(service, "utf8"), rid, body]).catch(reject);
    });
  }

  /** Call service.method with keyword params; resolves with the result or rejects with RPCError. */
  call(service, method, params = {}, timeoutMs) {
    const rid = Buffer.alloc(8);
    rid.writeBigUInt64BE(this.next++);
    return this.rawCall(service, rid, pack({ method, params }), timeoutMs);
  }

  close() {
    for (const w of this.pending.values()) w.reject(new Error("client closed"));
    this.pending.clear();
    this.sock.close();
  }
}

/**
 * A service worker: READY once, heartbeats at the middleware's interval, REQUEST -> REPLY or ERROR.
 * `methods` maps names to (params) => result (may be async); a thrown error's `type` (or its class
 * name) becomes the ERROR type.
 */
export class Worker {
  constructor(address, name, methods, { curve = {}, heartbeatSeconds = 1.0, liveness = 3, tokenFile = null } = {}) {
    this.tokenFile = tokenFile;
    this.address = address;
    this.name = name;
    this.methods = methods;
    this.curve = curve;
    this.heartbeatMs = heartbeatSeconds * 1000;
    this.liveness = liveness;
    this.served = 0;
    this.registrations = 0;
  }

  async start() {
    this.stopped = false;
    this.#connect();
    this.timer = setInterval(() => this.#beat(), this.heartbeatMs);
    this.loop = this.#receive();
  }

  #connect() {
    // immediate: never queue READY for a router that is not there yet
    this.sock = new zmq.Dealer({ linger: 0, immediate: true, ...this.curve });
    this.sock.connect(this.address);
    this.send = serialSender(this.sock);
    this.lastHeard = Date.now();
    this.#ready();
  }

  #ready() {
    const info = { pid: process.pid, host: os.hostname(), methods: Object.keys(this.methods), language: "node" };
    // the service token is read again before every READY: a restarted middleware has a new one
    if (this.tokenFile) info.token = readFileSync(this.tokenFile, "utf8").trim();
    this.registrations++;
    return this.send([WORKER_TAG, READY, Buffer.from(this.name, "utf8"), pack(info)]).catch(() => {});
  }

  #beat() {
    if (Date.now() - this.lastHeard > this.heartbeatMs * this.liveness) {
      // the router is silent: reconnect and register again
      this.sock.close();
      this.#connect();
      this.loop = this.#receive();
      return;
    }
    this.send([WORKER_TAG, HEARTBEAT]).catch(() => {});
  }

  async #receive() {
    const sock = this.sock;
    try {
      for await (const frames of sock) {
        this.lastHeard = Date.now();
        if (frames.length < 2 || !frames[0].equals(WORKER_TAG)) continue;
        const cmd = frames[1];
        if (cmd.equals(REQUEST) && frames.length === 5) this.#serve(frames[2], frames[3], frames[4]);
        else if (cmd.equals(DISCONNECT)) this.#ready(); // the router forgot us (e.g. it restarted)
      }
    } catch (err) {
      if (!sock.closed) throw err;
    }
  }

  async #serve(client, rid, body) {
    let cmd = REPLY;
    let out;
    try {
      let req;
      try {
        req = unpack(body);
      } catch (e) {
        throw Object.assign(new Error(`undecodable request: ${e.message}`), { type: "BadRequest" });
      }
      const params = req.params ?? {}; // params may be missing: no arguments
      if (typeof req.method !== "string" || typeof params !== "object" || Array.isArray(params)) {
        throw Object.assign(new Error("the body must be a map with a string method and a params map"), { type: "BadRequest" });
      }
      const fn = Object.hasOwn(this.methods, req.method) ? this.methods[req.method] : undefined;
      if (!fn) {
        throw Object.assign(new Error(`service '${this.name}' has no method '${req.method}'; methods: ${Object.keys(this.methods).join(", ")}`),
          { type: "MethodNotFound" });
      }
      out = pack(await fn(params));
    } catch (e) {
      cmd = ERROR;
      out = pack({ type: e.type ?? e.constructor?.name ?? "Error", message: String(e.message ?? e), traceback: e.stack });
    }
    this.served++;
    await this.send([WORKER_TAG, cmd, client, rid, out]).catch(() => {});
  }

  async stop() {
    this.stopped = true;
    clearInterval(this.timer);
    await this.send([WORKER_TAG, DISCONNECT]).catch(() => {});
    this.sock.close();
  }
}

/** Publisher: PUB connected to the router's publish address (bus.sub_port); per-topic sequence numbers. */
export class Publisher {
  constructor(address, { curve = {} } = {}) {
    this.sock = new zmq.Publisher({ linger: 500, ...curve });
    this.sock.connect(address);
    this.send = serialSender(this.sock);
    this.id = randomBytes(8);
    this.seq = new Map();
  }

  async publish(topic, obj) {
    const seq = (this.seq.get(topic) ?? 0n) + 1n;
    this.seq.set(topic, seq);
    const meta = Buffer.alloc(17);
    meta.writeUInt8(META_VERSION, 0);
    this.id.copy(meta, 1);
    meta.writeBigUInt64BE(seq, 9);
    await this.send([Buffer.from(topic, "utf8"), meta, pack(obj)]);
    return seq;
  }

  close() {
    this.sock.close();
  }
}

/** Subscriber: SUB connected to the router's subscribe address (bus.pub_port); counts gaps per (publisher, topic). */
export class Subscriber {
  constructor(address, prefixes, { curve = {} } = {}) {
    this.sock = new zmq.Subscriber({ linger: 0, ...curve });
    this.sock.connect(address);
    for (const p of prefixes) this.sock.subscribe(p);
    this.last = new Map();
    this.stats = { received: 0, gaps: 0, missed: 0, out_of_order: 0, malformed: 0 };
  }

  /** The next valid message {topic, seq, publisher, data}, or null after timeoutMs. */
  async recv(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      this.sock.receiveTimeout = left;
      let frames;
      try {
        frames = await this.sock.receive();
      } catch (e) {
        if (e.code === "EAGAIN") return null;
        throw e;
      }
      const m = this.#process(frames);
      if (m) return m;
    }
  }

  #process(frames) {
    const st = this.stats;
    if (frames.length !== 3 || frames[1].length !== 17 || frames[1][0] !== META_VERSION) {
      st.malformed++;
      return null;
    }
    const topic = frames[0].toString("utf8");
    const publisher = frames[1].subarray(1, 9).toString("hex");
    const seq = frames[1].readBigUInt64BE(9);
    let data;
    try {
      data = unpack(frames[2]);
    } catch {
      st.malformed++;
      return null;
    }
    const key = `${publisher}/${topic}`;
    const last = this.last.get(key);
    if (last !== undefined && seq !== last + 1n) {
      if (seq > last) {
        st.gaps++;
        st.missed += Number(seq - last - 1n);
      } else {
        st.out_of_order++; // a duplicate or a late message: not a loss
      }
    }
    if (last === undefined || seq > last) this.last.set(key, seq);
    st.received++;
    return { topic, seq, publisher, data };
  }

  close() {
    this.sock.close();
  }
}
