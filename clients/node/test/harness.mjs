// Real processes for the integration tests: the fake OpenAI server and a runpoller worker
// (both from the project's virtualenv), on the real Redis of REDIS_URL, in DB 13 (the tests'
// database, RUNPOLLER_TEST_REDIS_DB) under a key prefix of this test file's own.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createClient } from "redis";

import { newKey, RunpollerClient } from "../dist/index.js";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const BIN = process.env.RUNPOLLER_BIN ?? join(REPO, ".venv", "bin");
export const FAKE_KEY = "sk-node-client-test-key-123456";

export function testRedisUrl() {
  const url = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0");
  url.pathname = `/${process.env.RUNPOLLER_TEST_REDIS_DB ?? "13"}`;
  return url.toString();
}

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

async function until(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function start(args, env) {
  const proc = spawn(join(BIN, "runpoller"), args, { env, stdio: ["ignore", "ignore", "pipe"] });
  proc.stderrText = "";
  proc.stderr.on("data", (chunk) => (proc.stderrText += chunk));
  return proc;
}

/** Fake server + one worker (ASSISTANTS_API_KEY=user_provided: every job carries its key). */
export async function startStack(workerEnv = {}) {
  const namespace = `rpnode-${randomBytes(5).toString("hex")}`;
  const secretKeys = `node1:${newKey()},old:${newKey()}`;
  const port = await freePort();
  const root = `http://127.0.0.1:${port}`;
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(RUNPOLLER_|ASSISTANTS_)/.test(k)),
  );
  const fake = start(["fake-openai", "--port", String(port), "--api-key", FAKE_KEY], clean);
  await until("the fake server", async () => (await fetch(`${root}/_fake/health`)).ok);
  const redisUrl = testRedisUrl();
  const worker = start(["worker"], {
    ...clean,
    REDIS_URL: redisUrl,
    ASSISTANTS_BASE_URL: `${root}/v1`,
    ASSISTANTS_API_KEY: "user_provided",
    RUNPOLLER_SECRET_KEYS: secretKeys,
    RUNPOLLER_KEY_PREFIX: namespace,
    RUNPOLLER_QUEUE_NAME: `${namespace}:queue`,
    RUNPOLLER_POLL_INTERVAL_MS: "100",
    RUNPOLLER_TIMEOUT_MS: "20000",
    RUNPOLLER_CANCEL_GRACE_MS: "3000",
    RUNPOLLER_HEARTBEAT_INTERVAL_MS: "250",
    RUNPOLLER_ARQ_POLL_DELAY_S: "0.05",
    RUNPOLLER_LOG_LEVEL: "WARNING",
    RUNPOLLER_LOG_FORMAT: "json",
    RUNPOLLER_METRICS_PORT: "0",
    ...workerEnv,
  });
  const redis = createClient({ url: redisUrl });
  redis.on("error", () => undefined);
  await redis.connect();
  await until("the worker's heartbeat", async () => {
    if (worker.exitCode !== null) throw new Error(`worker exited: ${worker.stderrText}`);
    return (await redis.zCard(`${namespace}:workers`)) > 0;
  }).catch((error) => {
    throw new Error(`${error.message}; worker stderr: ${worker.stderrText.slice(-2000)}`);
  });
  const client = await RunpollerClient.connect({
    redis,
    queueName: `${namespace}:queue`,
    keyPrefix: namespace,
    secretKeys,
  });
  let serial = 0;
  return {
    namespace,
    secretKeys,
    redis,
    client,
    root,
    worker,
    /** A run id of this stack's own (arq job keys are shared by every prefix). */
    runId: (name) => `${namespace}.${name}.${++serial}`,
    /** A thread and run on the fake playing `scenario` (POST /_fake/runs: a built-in name). */
    async createRun(scenario) {
      const reply = await fetch(`${root}/_fake/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ script: scenario, assistant_id: "asst_node" }),
      });
      if (!reply.ok) throw new Error(`create run: ${reply.status} ${await reply.text()}`);
      return reply.json();
    },
    async stop() {
      for (const proc of [worker, fake]) {
        if (proc.exitCode === null) {
          proc.kill("SIGTERM");
          await new Promise((ok) => proc.once("exit", ok));
        }
      }
      for (const match of [`${namespace}*`, `arq:*${namespace}*`]) {
        for await (const keys of redis.scanIterator({ MATCH: match, COUNT: 1000 })) {
          if (keys.length > 0) await redis.del(keys);
        }
      }
      await redis.close();
    },
  };
}
