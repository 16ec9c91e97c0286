#!/usr/bin/env node
// Conformance client for the aitrados bus, written from docs/protocol.md alone.
// Each check prints one JSON line on stdout; tests/test_node_client.py drives it.
//
//   node conformance.mjs client --rpc ADDR --publish ADDR --subscribe ADDR [--symbol S --interval I]
//   node conformance.mjs worker --rpc ADDR --backend ADDR --name NAME --token-file <ipc_dir>/<name>-service.token
//   node conformance.mjs curve  --rpc ADDR --publish ADDR --subscribe ADDR --server-key server.key --client-secret client.key_secret
//
// ADDR are ZeroMQ endpoints: publishers connect to the router's publish address (bus.sub_port,
// XSUB side), subscribers to its subscribe address (bus.pub_port, XPUB side).

import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Publisher, RPCClient, RPCError, Subscriber, Worker, curveOptions, pack } from "./bus.mjs";

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    rpc: { type: "string" }, backend: { type: "string" }, publish: { type: "string" }, subscribe: { type: "string" },
    name: { type: "string", default: "nodecalc" }, symbol: { type: "string" }, interval: { type: "string" },
    "server-key": { type: "string" }, "client-secret": { type: "string" }, "token-file": { type: "string" },
  },
});

// JSON with BigInt as decimal strings and Dates as ISO text (msgpack timestamps decode to Date).
const out = (obj) => process.stdout.write(JSON.stringify(obj, (k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const waitFor = async (what) => {
  const { value, done } = await lines.next();
  if (done || value.trim() !== what) throw new Error(`expected '${what}' on stdin, got ${done ? "end of input" : value}`);
};

/** Poll fn() until it returns something truthy (bounded); returns it. */
async function until(fn, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function errorType(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return e instanceof RPCError ? e.type : `${e.code ?? e.name}`;
  }
}

async function client() {
  const rpc = new RPCClient(opt.rpc);
  const ping = await rpc.call("middleware", "ping");
  out({ check: "ping", result: ping, time_is_seconds: Math.abs(ping.time - Date.now() / 1000) < 3600 });
  // params may be left out: the body is then {"method": "ping"}
  const bare = await rpc.rawCall("middleware", Buffer.from("bare-ping"), pack({ method: "ping" }));
  out({ check: "ping_without_params", pong: bare.pong });
  out({ check: "services", names: Object.keys(await rpc.call("middleware", "services")).sort() });
  out({
    check: "errors",
    unknown_service: await errorType(rpc.call("no-such-service", "x")),
    empty_service: await errorType(rpc.call("", "x")),
    unknown_method: await errorType(rpc.call("middleware", "no_such_method")),
  });
  if (opt.symbol) {
    const bars = await rpc.call("chart", "window", { full_symbol: opt.symbol, interval: opt.interval, size: 5 });
    out({ check: "chart", bars: bars.map((b) => ({ close: b.close, close_datetime: b.close_datetime, is_date: b.close_datetime instanceof Date })) });
  }

  // subscribe, wait until the router has our subscription, then let the test publish
  const sub = new Subscriber(opt.subscribe, ["conf."]);
  await until(async () => "conf." in (await rpc.call("middleware", "stats")).pubsub.subscriptions, "the subscription at the router");
  out({ check: "subscribed" });
  const got = [];
  for (let i = 0; i < 1000; i++) {
    const m = await sub.recv(30000);
    if (!m) throw new Error("no message on conf. within 30 s");
    got.push(m);
    if (m.data.end) break;
  }
  out({ check: "gaps", stats: sub.stats, seqs: got.map((m) => m.seq), first: got[0].data });
  sub.close();

  // publish: first until the router counts our probe (our connection is up), then the real messages
  const pub = new Publisher(opt.publish);
  await until(async () => {
    await pub.publish("nodeprobe.x", { probe: true });
    return "nodeprobe.x" in (await rpc.call("middleware", "topics"));
  }, "the router to see our publisher");
  out({ check: "ready_to_publish" });
  await waitFor("publish");
  for (let i = 1; i <= 5; i++) await pub.publish("node.hello", { i, from: "node", big: 2n ** 60n + 1n });
  out({ check: "published", count: 5 });
  const topics = await until(async () => {
    const t = await rpc.call("middleware", "topics");
    return t["node.hello"]?.count === 5 && t;
  }, "node.hello counted");
  out({ check: "topics", node_hello: topics["node.hello"] });
  pub.close();
  rpc.close();
}

async function worker() {
  const rpc = new RPCClient(opt.rpc);
  const ping = await rpc.call("middleware", "ping");
  const methods = {
    add: ({ a, b }) => a + b,
    echo: (params) => params,
    big: () => 2n ** 60n + 1n,
    when: () => new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
    fail: ({ why }) => {
      throw Object.assign(new Error(why ?? "failed on purpose"), { type: "ValueError" });
    },
    sleep: async ({ ms }) => {
      await sleep(ms);
      return "slept";
    },
  };
  const w = new Worker(opt.backend, opt.name, methods, {
    heartbeatSeconds: ping.heartbeat_interval ?? 1.0, liveness: ping.heartbeat_liveness ?? 3,
    tokenFile: opt["token-file"] ?? null,
  });
  await w.start();
  await until(async () => opt.name in (await rpc.call("middleware", "services")), "our registration");
  rpc.close();
  out({ check: "worker_ready", pid: process.pid, heartbeat_interval: ping.heartbeat_interval });
  const stop = async () => {
    await w.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

async function curve() {
  const c = curveOptions(opt["server-key"], opt["client-secret"]);
  const rpc = new RPCClient(opt.rpc, { curve: c });
  const ping = await rpc.call("middleware", "ping");
  const sub = new Subscriber(opt.subscribe, ["curve."], { curve: c });
  await until(async () => "curve." in (await rpc.call("middleware", "stats")).pubsub.subscriptions, "the CURVE subscription");
  const pub = new Publisher(opt.publish, { curve: c });
  let m = null;
  for (let i = 0; i < 200 && !m; i++) {
    await pub.publish("curve.echo", { i });
    m = await sub.recv(100);
  }
  out({ check: "curve", pong: ping.pong, roundtrip: m ? m.topic : null });
  for (const s of [rpc, sub, pub]) s.close();
}

const modes = { client, worker, curve };
const mode = modes[positionals[0]];
if (!mode) {
  console.error(`usage: conformance.mjs ${Object.keys(modes).join("|")} --rpc ADDR ...`);
  process.exit(2);
}
mode().then(
  () => { if (positionals[0] !== "worker") process.exit(0); },
  (err) => {
    console.error(err?.stack ?? err);
    process.exit(1);
  },
);
