// The client's job checks agree with the worker's model (runpoller.protocol.parse_job) on
// which jobs are valid: the same jobs go through both.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { it } from "node:test";

import { validateJob } from "../dist/index.js";
import { BIN } from "./harness.mjs";

const run = { kind: "assistants_run", thread_id: "thread_1", run_id: "run_1" };
const resp = { kind: "response", response_id: "resp_1" };
// The known differences: the worker's pydantic model (lax mode) takes the string "10" as the
// integer 10 and `true` as 1; the schema says integer, and so does the client, which refuses
// both (the test fails the day the worker refuses them too: then they move to JOBS).
const STRICTER = [
  { ...run, timeout_ms: "10" },
  { ...run, timeout_ms: true },
];
const turn = { kind: "agent_turn", session_id: "sess_1", turn_id: "turn_1" };
const JOBS = [
  run,
  { ...run, id: "app:run.1_x-2", v: 1, api_key: "enc:v1:k:abc", poll_interval_ms: 100, timeout_ms: 1 },
  { ...run, metadata: { a: "x", b: 1, c: 1.5, d: true, e: null } },
  { ...run, metadata: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])) },
  { ...run, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i])) },
  { ...run, metadata: { a: { nested: 1 } } },
  { ...run, metadata: { a: [1] } },
  { ...run, id: null, api_key: null, timeout_ms: null, metadata: null },
  { ...run, thread_id: "thread/1" },
  { ...run, run_id: "" },
  { ...run, run_id: "r".repeat(129) },
  { ...run, id: "a b" },
  { ...run, id: "x".repeat(129) },
  { ...run, v: 2 },
  { ...run, poll_interval_ms: 99 },
  { ...run, poll_interval_ms: 100.5 },
  { ...run, timeout_ms: 0 },
  { ...run, timeout_ms: 1e3 },
  { ...run, metadata: { "": "empty key" } },
  { ...run, metadata: [] },
  { ...run, api_key: 5 },
  { ...run, extra: 1 },
  { ...run, response_id: "resp_1" },
  { kind: "assistants_run", thread_id: "thread_1" },
  { kind: "nope" },
  {},
  resp,
  { ...resp, stream: true },
  { kind: "response", id: "r-s", request: { model: "gpt-4o", input: "hi" }, stream: true },
  { ...resp, stream: "yes" },
  { ...resp, continuation: { model: "gpt-4o", tools: [] } },
  { ...resp, continuation: { input: [] } },
  { ...resp, continuation: { store: true } },
  { ...resp, request: { model: "gpt-4o" } },
  { kind: "response", id: "r1", request: { model: "gpt-4o", input: "hi" } },
  { kind: "response", id: "r1", request: { model: "gpt-4o", background: true } },
  { kind: "response", id: "r1", request: { previous_response_id: "x" } },
  { kind: "response", request: { model: "gpt-4o" } },
  { kind: "response" },
  { ...resp, response_id: "resp/../1" },
  { ...resp, thread_id: "thread_1" },
  { ...resp, request: null },
  { ...resp, continuation: [] },
  turn,
  { ...turn, id: null },
  { kind: "agent_turn", id: "t1", session_id: "sess_1", input: "Hi" },
  { kind: "agent_turn", id: "t1", session_id: "sess_1", input: [{ role: "user", content: [] }] },
  { kind: "agent_turn", id: "t1", session_id: "sess_1", input: "" },
  { kind: "agent_turn", id: "t1", session_id: "sess_1", input: 5 },
  { kind: "agent_turn", session_id: "sess_1", input: "Hi" },
  { ...turn, input: "Hi" },
  { kind: "agent_turn", id: "t1", session_id: "sess_1" },
  { ...turn, session_id: "sess/1" },
  { ...turn, turn_id: "" },
  { ...turn, thread_id: "thread_1" },
];

const SCRIPT = `import json, sys
from pydantic import ValidationError
from runpoller.protocol import parse_job
out = []
for job in json.loads(sys.argv[1]):
    try:
        parse_job(job)
        out.append(True)
    except ValidationError:
        out.append(False)
print(json.dumps(out))`;

/** Whether the worker's parse_job accepts each job. */
function verdicts(jobs) {
  return JSON.parse(
    execFileSync(join(BIN, "python"), ["-c", SCRIPT, JSON.stringify(jobs)], { encoding: "utf8" }),
  );
}

it("accepts and refuses the same jobs as the worker", () => {
  const python = verdicts(JOBS);
  const node = JOBS.map((job) => {
    try {
      validateJob(job);
      return true;
    } catch {
      return false;
    }
  });
  const disagree = JOBS.map((job, i) => ({ job, node: node[i], worker: python[i] })).filter(
    (row) => row.node !== row.worker,
  );
  assert.deepEqual(disagree, []);
  assert.ok(python.includes(true) && python.includes(false));
  for (const job of STRICTER) assert.throws(() => validateJob(job), /timeout_ms: must be an integer/);
  assert.deepEqual(verdicts(STRICTER), [true, true], "the worker refuses these now: move them to JOBS");
});
