#!/usr/bin/env node
"use strict";
// List a Tendril worker's leases and jobs, as two tables.
//
//   node clients/node/examples/list-worker.js LEASE_ADDRESS JOB_ADDRESS [PEER_ID]
//
// e.g. `node clients/node/examples/list-worker.js 127.0.0.1:50052 127.0.0.1:50053 ops`.
// PEER_ID is sent as metadata "tendril-peer-id" (who is asking; listing needs no ownership).
// mTLS: set TENDRIL_TLS_CA_FILE, TENDRIL_TLS_CERT_FILE and TENDRIL_TLS_KEY_FILE (the variables
// of the worker config's [tls] section; `tendril certs issue NAME` makes the files); the peer
// id is then the certificate's CN.
// Exit status: 0 on success, 2 on bad arguments or unreadable TLS files, 1 when a call fails.

const fs = require("fs");
const { grpc, tendril } = require("..");

const { LeaseServiceClient, leaseKindToJSON } = tendril.lease.v1;
const { JobServiceClient, jobStateToJSON } = tendril.job.v1;

const CALL_SECONDS = 10;
const TLS_VARIABLES = ["TENDRIL_TLS_CA_FILE", "TENDRIL_TLS_CERT_FILE", "TENDRIL_TLS_KEY_FILE"];

function usage(message) {
  process.stderr.write(`list-worker: ${message}\nusage: list-worker.js LEASE_ADDRESS JOB_ADDRESS [PEER_ID]\n`);
  process.exit(2);
}

// Plaintext, or mTLS when the TENDRIL_TLS_* variables name a CA, a certificate and its key.
function credentialsFromEnv(env) {
  const given = TLS_VARIABLES.filter((name) => env[name]);
  if (given.length === 0) return grpc.credentials.createInsecure();
  if (given.length < TLS_VARIABLES.length) {
    usage(`for mTLS set all of ${TLS_VARIABLES.join(", ")} (only ${given.join(", ")} set), or none`);
  }
  const [ca, cert, key] = TLS_VARIABLES.map((name) => {
    try {
      return fs.readFileSync(env[name]);
    } catch (err) {
      return usage(`cannot read ${name}=${env[name]}: ${err.message}`);
    }
  });
  return grpc.credentials.createSsl(ca, key, cert);
}

// "LEASE_KIND_RENEWABLE" -> "RENEWABLE": the enum prefix says nothing in a column named KIND.
function enumName(text, prefix) {
  return text.startsWith(prefix) ? text.slice(prefix.length) : text;
}

function seconds(ms) {
  const s = ms / 1000;
  if (Math.abs(s) < 120) return `${s.toFixed(1)}s`;
  if (Math.abs(s) < 7200) return `${(s / 60).toFixed(1)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) => String(c).padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

// Promise wrapper of a unary call with metadata and a deadline; a failure names what was
// called. Requests must be built with Message.create()/fromPartial(): the generated encoders
// expect every field to be present.
function call(client, method, request, metadata, what) {
  const deadline = new Date(Date.now() + CALL_SECONDS * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (err, reply) => {
      if (!err) return resolve(reply);
      const code = err.code !== undefined ? grpc.status[err.code] : "ERROR";
      reject(new Error(`${what} failed: ${code}: ${err.details || err.message}`));
    });
  });
}

const LEASE_COLUMNS = ["LEASE", "OWNER", "KIND", "CPU", "MEM_GIB", "GPU", "PRICE", "EXPIRES_IN"];
const JOB_COLUMNS = ["JOB", "STATE", "EXECUTOR", "OWNER", "LEASE", "AGE", "PROGRESS", "REASON"];

function leaseRows(leases, now) {
  return leases.map((l) => {
    const r = l.resources || {};
    return [
      l.leaseId,
      l.ownerId,
      enumName(leaseKindToJSON(l.kind), "LEASE_KIND_"),
      r.cpu ?? 0,
      r.memoryGib ?? 0,
      r.gpu ?? 0,
      l.price,
      l.expiresAt ? seconds(l.expiresAt.getTime() - now) : "-",
    ];
  });
}

function jobRows(jobs, now) {
  return jobs.map((j) => {
    const progress = Object.entries(j.progress || {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`)
      .join(" ");
    return [
      j.jobId,
      enumName(jobStateToJSON(j.state), "JOB_STATE_"),
      j.executor ? `${j.executor.executorClass}/${j.executor.name}` : "-",
      j.ownerId,
      j.leaseId,
      j.createdAt ? seconds(now - j.createdAt.getTime()) : "-",
      progress || "-",
      j.reason || "",
    ];
  });
}

async function main(argv) {
  const [leaseAddress, jobAddress, peerId = "node-list-worker"] = argv;
  if (!leaseAddress || !jobAddress) usage("needs the LeaseService and JobService addresses");
  if (argv.length > 3) usage(`unexpected argument ${JSON.stringify(argv[3])}`);
  const metadata = new grpc.Metadata();
  metadata.set("tendril-peer-id", peerId);
  const credentials = credentialsFromEnv(process.env);
  const leases = new LeaseServiceClient(leaseAddress, credentials);
  const jobs = new JobServiceClient(jobAddress, credentials);
  try {
    const [leaseReply, jobReply] = await Promise.all([
      call(leases, "list", tendril.lease.v1.ListRequest.create(), metadata, `LeaseService.List at ${leaseAddress}`),
      call(jobs, "list", tendril.job.v1.ListRequest.create(), metadata, `JobService.List at ${jobAddress}`),
    ]);
    const now = Date.now();
    const out = [
      `Leases at ${leaseAddress} (${leaseReply.leases.length})`,
      table(LEASE_COLUMNS, leaseRows(leaseReply.leases, now)),
      "",
      `Jobs at ${jobAddress} (${jobReply.jobs.length})`,
      table(JOB_COLUMNS, jobRows(jobReply.jobs, now)),
    ];
    process.stdout.write(out.join("\n") + "\n");
    return 0;
  } catch (err) {
    process.stderr.write(`list-worker: ${err.message}\n`);
    return 1;
  } finally {
    leases.close();
    jobs.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
