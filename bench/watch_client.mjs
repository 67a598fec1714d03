// WatchAvailability watchers for bench/watch_fanout.py, in Node (node:http2, nghttp2 in C):
// a Python grpc.aio client spends about three times the server's CPU per message, so on a
// small machine it, not the catalog, would be what the benchmark measures.
//
//   node bench/watch_client.mjs '<json: url, path, eventId, count, connections, openBy,
//                                       ca?, cert?, key?>'
//
// Opens `count` streams over `connections` HTTP/2 connections (mutual TLS when ca/cert/key are
// given, h2c otherwise), spread over `openBy` seconds. Prints "opened" once every stream has
// had its first snapshot; on "stop" (stdin) closes them and prints one JSON line: when each
// changed ticket id arrived at each stream (epoch seconds), messages, snapshots, errors, CPU.
import fs from "node:fs";
import http2 from "node:http2";
import readline from "node:readline";

const args = JSON.parse(process.argv[2]);
const tls = args.ca
  ? { ca: fs.readFileSync(args.ca), cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) }
  : {};

const now = () => (performance.timeOrigin + performance.now()) / 1000;

// WatchAvailabilityRequest { string event_id = 1; } in a gRPC frame.
const id = Buffer.from(args.eventId);
const message = Buffer.concat([Buffer.from([0x0a, id.length]), id]);
const frame = Buffer.alloc(5);
frame.writeUInt32BE(message.length, 1);
const body = Buffer.concat([frame, message]);

function varint(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, pos];
    shift += 7;
  }
}

// AvailabilityUpdate: snapshot = 1, changes = 2 (TicketStateChange: ticket_id = 1).
function decode(buf) {
  let snapshot = false;
  const ids = [];
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      [, pos] = varint(buf, pos);
      continue;
    }
    if (wire !== 2) throw new Error(`unexpected wire type ${wire}`);
    let len;
    [len, pos] = varint(buf, pos);
    const end = pos + len;
    if (field === 1) snapshot = true;
    if (field === 2) {
      let p = pos;
      while (p < end) {
        let k;
        [k, p] = varint(buf, p);
        if ((k & 7) === 0) {
          [, p] = varint(buf, p);
          continue;
        }
        let l;
        [l, p] = varint(buf, p);
        if (k >> 3 === 1) ids.push(buf.toString("latin1", p, p + l));
        p += l;
      }
    }
    pos = end;
  }
  return { snapshot, ids };
}

const arrivals = {};
const errors = {};
let messages = 0;
let snapshots = 0;
let opened = 0;
const sessions = [];
const streams = [];
for (let i = 0; i < args.connections; i++) {
  const session = http2.connect(args.url, { ...tls, peerMaxConcurrentStreams: 100000 });
  session.on("error", (err) => {
    errors[`session: ${err.code || err.message}`] = (errors[`session: ${err.code || err.message}`] || 0) + 1;
  });
  sessions.push(session);
}

function open(i) {
  const stream = sessions[i % sessions.length].request({
    ":method": "POST",
    ":path": args.path,
    "content-type": "application/grpc",
    te: "trailers",
  });
  streams.push(stream);
  let pending = Buffer.alloc(0);
  let first = true;
  stream.on("data", (chunk) => {
    const at = now();
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 5) {
      const len = pending.readUInt32BE(1);
      if (pending.length < 5 + len) break;
      const update = decode(pending.subarray(5, 5 + len));
      pending = pending.subarray(5 + len);
      if (update.snapshot) {
        snapshots++;
        if (first) {
          first = false;
          if (++opened === args.count) process.stdout.write("opened\n");
        }
        continue;
      }
      messages++;
      for (const ticket of update.ids) (arrivals[ticket] ||= []).push(at);
    }
  });
  // A refusal comes as headers only ("Trailers-Only"), an end with an error as trailers.
  const status = (headers) => {
    const code = headers["grpc-status"];
    if (code && code !== "0") {
      const key = `grpc-status ${code}: ${decodeURIComponent(headers["grpc-message"] || "").slice(0, 60)}`;
      errors[key] = (errors[key] || 0) + 1;
    }
  };
  stream.on("response", status);
  stream.on("trailers", status);
  stream.on("error", (err) => {
    if (stopping) return;
    const key = `stream: ${err.code || err.message}`;
    errors[key] = (errors[key] || 0) + 1;
  });
  stream.end(body);
}

let stopping = false;
const started = process.cpuUsage();
for (let i = 0; i < args.count; i++) setTimeout(() => open(i), (args.openBy * 1000 * i) / args.count);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "stop") return;
  stopping = true;
  const cpu = process.cpuUsage(started);
  for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
  for (const s of sessions) s.destroy();
  process.stdout.write(
    JSON.stringify({ arrivals, messages, snapshots, errors, cpu: (cpu.user + cpu.system) / 1e6 }) +
      "\n",
    () => process.exit(0),
  );
});
