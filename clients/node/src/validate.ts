// The job checks an app gets before anything is written: the JSON Schema of docs/protocol.md
// (the generated types say the same at compile time), plus the rules the worker's model adds
// (worker/runpoller/protocol/jobs.py: one of response_id and request, request needs an id,
// fields the worker sets). The worker checks every job again; this only fails early, with one
// line naming the field.
import { API_ID_PATTERN, MAX_METADATA_KEYS, RUN_ID_PATTERN, type Job } from "./protocol.js";

/** A job (or argument) the protocol refuses; `message` names the field and the problem. */
export class InvalidJobError extends Error {
  override name = "InvalidJobError";
}

const API_ID = new RegExp(API_ID_PATTERN);
export const RUN_ID = new RegExp(RUN_ID_PATTERN);
const COMMON = ["v", "id", "api_key", "poll_interval_ms", "timeout_ms", "metadata"];
const FIELDS: Record<string, string[]> = {
  assistants_run: [...COMMON, "kind", "thread_id", "run_id"],
  response: [...COMMON, "kind", "response_id", "request", "continuation", "stream"],
  agent_turn: [...COMMON, "kind", "session_id", "turn_id", "input"],
};
const RESERVED = ["previous_response_id", "background", "store", "stream", "input", "conversation"];

type Fields = Record<string, unknown>;

function isObject(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(field: string, problem: string): never {
  throw new InvalidJobError(`${field}: ${problem}`);
}

function given(job: Fields, field: string): boolean {
  return job[field] !== undefined && job[field] !== null;
}

function checkId(job: Fields, field: string, pattern: RegExp, required: boolean): void {
  const value = job[field];
  if (!given(job, field)) {
    if (required) fail(field, "is required");
    return;
  }
  if (typeof value !== "string" || !pattern.test(value)) {
    fail(field, `must match ${pattern.source} (got ${JSON.stringify(value)})`);
  }
}

function checkInt(job: Fields, field: string, minimum: number): void {
  const value = job[field];
  if (!given(job, field)) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < minimum) {
    fail(field, `must be an integer >= ${minimum} (got ${JSON.stringify(value)})`);
  }
}

function checkMetadata(job: Fields): void {
  const metadata = job.metadata;
  if (!given(job, "metadata")) return;
  if (!isObject(metadata)) fail("metadata", "must be an object");
  const keys = Object.keys(metadata);
  if (keys.length > MAX_METADATA_KEYS) {
    fail("metadata", `has ${keys.length} keys, at most ${MAX_METADATA_KEYS} are allowed`);
  }
  for (const key of keys) {
    const value = metadata[key];
    if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      fail(`metadata.${key}`, "must be a string, number, boolean or null");
    }
  }
}

function checkResponse(job: Fields): void {
  checkId(job, "response_id", API_ID, false);
  if (given(job, "stream") && typeof job.stream !== "boolean") fail("stream", "must be a boolean");
  for (const field of ["request", "continuation"]) {
    if (given(job, field) && !isObject(job[field])) fail(field, "must be an object");
  }
  if (given(job, "response_id") === given(job, "request")) {
    fail("job", "give exactly one of response_id and request");
  }
  if (given(job, "request") && !given(job, "id")) {
    fail("id", "a job with request needs an id (the response id is not known yet)");
  }
  for (const field of ["request", "continuation"]) {
    const body = (job[field] ?? {}) as Fields;
    const reserved = RESERVED.filter((name) => name in body);
    if (reserved.length > 0 && !(field === "request" && reserved.join() === "input")) {
      fail(field, `must not set ${reserved.sort().join(", ")}`);
    }
  }
}

function checkAgentTurn(job: Fields): void {
  checkId(job, "session_id", API_ID, true);
  checkId(job, "turn_id", API_ID, false);
  const input = job.input;
  if (given(job, "input") && typeof input !== "string" && !Array.isArray(input)) {
    fail("input", "must be a string or an array of messages");
  }
  if (input === "") fail("input", "must not be empty");
  if (given(job, "turn_id") === given(job, "input")) {
    fail("job", "give exactly one of turn_id and input");
  }
  if (given(job, "input") && !given(job, "id")) {
    fail("id", "a job with input needs an id (the turn id is not known yet)");
  }
}

/** The job, checked (InvalidJobError naming the first problem). */
export function validateJob(job: unknown): Job {
  if (!isObject(job)) fail("job", "must be an object");
  const fields = FIELDS[String(job.kind)];
  if (fields === undefined) {
    fail(
      "kind",
      `must be "assistants_run", "response" or "agent_turn" (got ${JSON.stringify(job.kind)})`,
    );
  }
  for (const field of Object.keys(job)) {
    if (!fields.includes(field)) fail(field, `is not a field of a ${String(job.kind)} job`);
  }
  if (given(job, "v") && job.v !== 1) fail("v", `must be 1 (got ${JSON.stringify(job.v)})`);
  checkId(job, "id", RUN_ID, false);
  if (given(job, "api_key") && typeof job.api_key !== "string") fail("api_key", "must be a string");
  checkInt(job, "poll_interval_ms", 100);
  checkInt(job, "timeout_ms", 1);
  checkMetadata(job);
  if (job.kind === "assistants_run") {
    checkId(job, "thread_id", API_ID, true);
    checkId(job, "run_id", API_ID, true);
  } else if (job.kind === "agent_turn") {
    checkAgentTurn(job);
  } else {
    checkResponse(job);
  }
  return job as unknown as Job;
}

/** The logical run id of a checked job: its `id`, else its run, response or turn id. */
export function runIdOf(job: Job): string {
  if (job.id) return job.id;
  if (job.kind === "assistants_run") return job.run_id;
  if (job.kind === "agent_turn") return job.turn_id ?? "";
  return job.response_id ?? "";
}

export function checkRunId(runId: unknown): string {
  if (typeof runId !== "string" || !RUN_ID.test(runId)) {
    throw new InvalidJobError(
      `invalid run id ${JSON.stringify(runId)}: it must match ${RUN_ID_PATTERN}`,
    );
  }
  return runId;
}
