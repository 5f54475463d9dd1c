#!/usr/bin/env node
"use strict";
// A Tendril executor written in Node: the example of docs/EXECUTORS.md.
//
// Configured on a worker as
//   [[executors]]
//   executor_class = "example"
//   name = "node"
//   command = ["node", "/path/to/tendril/executors/node_example/main.js", "{SOCKET_PATH}"]
//
// It talks to its job bridge (tendril.bridge.v1.JobBridgeService) over the Unix socket with
// the job's token, using the generated stubs in clients/node:
//   1. GetJob, and prints the job;
//   2. when the job has a scheduler (job.json "coordinator_address"), sends `steps` BATCH
//      progress reports (loss = 1 / (step + 1)) and one FINISHED report through ReportProgress,
//      stopping early when the scheduler answers DIRECTIVE_DONE;
//   3. writes node-result.json into its work dir (atomically: temp file + rename);
//   4. sleeps `sleep_seconds` (so a test can cancel it mid-run), exits with `exit_code`.
// On SIGTERM it stops at once with code 143. Config keys (all optional): steps (default 3),
// sleep_seconds (0), exit_code (0).

const fs = require("fs");
const path = require("path");

// NOTE: a relative require keeps the example runnable from a checkout with nothing but
// `npm ci --prefix clients/node`; an executor outside this repository would depend on the
// client package instead (see docs/EXECUTORS.md).
const { grpc, tendril } = require(path.join(__dirname, "..", "..", "clients", "node"));

const bridgeV1 = tendril.bridge.v1;
const { ProgressKind, directiveToJSON, Directive } = tendril.scheduler.v1;

const EXIT_ON_SIGTERM = 143; // 128 + SIGTERM, what a shell reports for a SIGTERM death
const CALL_SECONDS = 30;
const RESULT_NAME = "node-result.json";

function say(text) {
  process.stdout.write(`[node-example] ${text}\n`);
}

function fail(message, code) {
  process.stderr.write(`node example executor: ${message}\n`);
  process.exit(code);
}

// Promise wrapper of a unary bridge call: token metadata and a deadline on every call.
function call(client, method, request, metadata) {
  const deadline = new Date(Date.now() + CALL_SECONDS * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (err, reply) => {
      if (!err) return resolve(reply);
      const code = err.code !== undefined ? grpc.status[err.code] : "ERROR";
      reject(new Error(`bridge ${method} failed: ${code}: ${err.details || err.message}`));
    });
  });
}

function readJobJson() {
  const file = process.env.JOB_JSON;
  if (!file) return {};
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

function writeResult(workDir, result) {
  const final = path.join(workDir, RESULT_NAME);
  const temp = `${final}.tmp-${process.pid}`;
  fs.writeFileSync(temp, JSON.stringify(result, null, 2) + "\n");
  fs.renameSync(temp, final);
  return final;
}

async function report(bridge, metadata, progress) {
  const request = bridgeV1.ReportProgressRequest.fromPartial({ progress });
  const reply = await call(bridge, "reportProgress", request, metadata);
  const directive = reply.directive || { directive: Directive.DIRECTIVE_UNSPECIFIED, round: 0 };
  return { kind: progress.kind, round: progress.round, directive: directiveToJSON(directive.directive) };
}

async function sendProgress(bridge, metadata, steps) {
  const reports = [];
  let last = process.hrtime.bigint();
  for (let step = 0; step < steps; step += 1) {
    // A real executor trains a batch here; the example's "batch" is the time since the last report.
    const now = process.hrtime.bigint();
    const batchSeconds = Number(now - last) / 1e9;
    last = now;
    const loss = 1 / (step + 1);
    const sent = await report(bridge, metadata, {
      kind: ProgressKind.PROGRESS_KIND_BATCH,
      round: 0,
      batchSize: 1,
      batchSeconds,
      metrics: { loss, step },
    });
    reports.push(sent);
    say(`progress step ${step}: loss ${loss.toFixed(4)} -> ${sent.directive}`);
    if (sent.directive === "DIRECTIVE_DONE") return reports;
  }
  const finished = await report(bridge, metadata, { kind: ProgressKind.PROGRESS_KIND_FINISHED, round: 0 });
  reports.push(finished);
  say(`progress FINISHED -> ${finished.directive}`);
  return reports;
}

async function run(socketPath, token) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const bridge = new bridgeV1.JobBridgeServiceClient(`unix:${socketPath}`, grpc.credentials.createInsecure());
  try {
    const job = await call(bridge, "getJob", bridgeV1.GetJobRequest.create(), metadata);
    const config = job.config || {};
    const executor = job.executor ? `${job.executor.executorClass}/${job.executor.name}` : "?";
    say(`job ${job.jobId} on worker ${job.workerId}, executor ${executor}, config ${JSON.stringify(config)}`);
    const jobJson = readJobJson();
    const steps = Number.isInteger(config.steps) && config.steps >= 0 ? config.steps : 3;
    let reports = [];
    if (jobJson.coordinator_address) {
      reports = await sendProgress(bridge, metadata, steps);
    } else {
      say("no scheduler to report progress to (dispatched without coordinator_address)");
    }
    const exitCode = Number.isInteger(config.exit_code) ? config.exit_code : 0;
    const written = writeResult(process.env.WORK_DIR || process.cwd(), {
      job_id: job.jobId,
      worker_id: job.workerId,
      executor,
      config,
      reports,
      node_version: process.version,
      exit_code: exitCode,
    });
    say(`wrote ${written}`);
    return { exitCode, sleepSeconds: Number(config.sleep_seconds) || 0 };
  } finally {
    bridge.close();
  }
}

function main(argv) {
  const socketPath = argv[0] || process.env.SOCKET_PATH || "";
  const token = process.env.TENDRIL_BRIDGE_TOKEN || "";
  if (!socketPath || !token) {
    fail("needs the bridge socket (first argument or env SOCKET_PATH) and env TENDRIL_BRIDGE_TOKEN", 2);
  }
  process.on("SIGTERM", () => {
    say("SIGTERM: stopping now");
    process.exit(EXIT_ON_SIGTERM); // nothing to save: the result file is written atomically
  });
  const started = Date.now();
  run(socketPath, token)
    .then(async ({ exitCode, sleepSeconds }) => {
      if (sleepSeconds > 0) {
        say(`sleeping ${sleepSeconds} s`);
        await new Promise((resolve) => setTimeout(resolve, sleepSeconds * 1000));
      }
      say(`done in ${((Date.now() - started) / 1000).toFixed(2)} s, exiting with code ${exitCode}`);
      process.exitCode = exitCode;
    })
    .catch((err) => {
      say(err.message);
      process.exitCode = 1;
    });
}

main(process.argv.slice(2));
