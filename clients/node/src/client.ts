// The Node client: the Redis side of docs/protocol.md (enqueue, events, result, wait, tool
// replies, cancel, status), on node-redis. The app keeps the API side (creating runs or
// responses, its own functions); the workers do the polling.
import { createClient } from "redis";

import { encryptApiKey, isEncrypted, parseKeyRing, type KeyRing } from "./keyring.js";
import { FN_RUN, type Event, type FinalEvent, type Job } from "./protocol.js";
import { checkRunId, InvalidJobError, runIdOf, validateJob } from "./validate.js";

export const JOB_EXPIRES_MS = 24 * 3600 * 1000;
export const CANCEL_TTL_S = 7 * 24 * 3600;
const STREAM_MAXLEN = 100_000;
const ARQ_JOB_PREFIX = "arq:job:";

/** The client's own view of node-redis (RESP3, `createClient()`'s default in redis 6). */
export type Redis = ReturnType<typeof createClient<any, any, any, 3, {}>>;
/** An app's node-redis client: any modules, RESP2 or RESP3 (replies are read either way). */
export type AnyRedis = ReturnType<typeof createClient<any, any, any, any, any>>;

/** An event as read from the stream: `type` is always there (the schema's default). */
type Received<E> = E extends { type?: infer T } ? E & { type: NonNullable<T> } : never;
export type ReceivedEvent = Received<Event>;

export interface StreamEvent {
  /** The stream entry id: pass it as `after` to resume right after this event. */
  id: string;
  event: ReceivedEvent;
}

export interface ClientOptions {
  /** The app's connected node-redis client (the app closes it), or... */
  redis?: AnyRedis;
  /** ...a Redis URL: the client connects and `close()` disconnects. */
  url?: string;
  /** RUNPOLLER_QUEUE_NAME (default `runpoller:queue`). */
  queueName?: string;
  /** RUNPOLLER_KEY_PREFIX (default `runpoller`). */
  keyPrefix?: string;
  /** RUNPOLLER_SECRET_KEYS: job API keys are encrypted with the first key before Redis. */
  secretKeys?: string;
}

export interface EventsOptions {
  /** Resume after this stream id (default `0-0`: from the first event). */
  after?: string;
  /** How long one XREAD blocks before it is sent again (default 5000). */
  blockMs?: number;
  /** Stop following: the iterator ends by throwing the signal's reason. */
  signal?: AbortSignal;
}

/** `wait` gave up before the run ended (the run goes on). */
export class WaitTimeoutError extends Error {
  override name = "TimeoutError";
}

export interface CancelOutcome {
  run_id: string;
  /** `requested`: written; `already_ended`: the run had its result, nothing was written. */
  outcome: "requested" | "already_ended";
  final_status?: string;
  /** The request's entry on the cancels stream. */
  entry_id?: string;
}

export type RunStatus = "queued" | "in_flight" | "requires_action" | "ended";

/** What Redis knows of one run (no secret in it: `job.api_key` is replaced by a word). */
export interface RunView {
  run_id: string;
  status: RunStatus;
  job: Record<string, unknown> | null;
  phase: string | null;
  owner: string | null;
  deadline_ms: number | null;
  round: number;
  pending_calls: string[];
  cancel_request: Record<string, string> | null;
  queued_at: number | null;
  events: number;
  final_status: string | null;
  result: FinalEvent | null;
}

// Section 5 of docs/protocol.md as one script: the result check and the writes are atomic,
// without a WATCH (which would need a connection of its own under node-redis).
const CANCEL_SCRIPT = `
local final = redis.call('GET', KEYS[1])
if final then return {0, final} end
redis.call('HSET', KEYS[2], 'reason', ARGV[1], 'requested_at', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'run_id', ARGV[5], 'reason', ARGV[1])
return {1, id}
`;

function jsonObject(raw: unknown): Record<string, unknown> | null {
  if (typeof raw !== "string") return null;
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

function shownJob(job: Record<string, unknown>): Record<string, unknown> {
  const key = job.api_key;
  let shown = "none";
  if (typeof key === "string" && key) shown = isEncrypted(key) ? "encrypted" : "plaintext (hidden)";
  return { ...job, api_key: shown };
}

export class RunpollerClient {
  readonly redis: Redis;
  readonly queueName: string;
  readonly prefix: string;
  readonly #ring: KeyRing;
  readonly #owned: boolean;

  constructor(options: ClientOptions & { redis: AnyRedis }, owned = false) {
    this.redis = options.redis as Redis;
    this.queueName = options.queueName ?? "runpoller:queue";
    this.prefix = options.keyPrefix ?? "runpoller";
    this.#ring = options.secretKeys ? parseKeyRing(options.secretKeys) : new Map();
    this.#owned = owned;
  }

  /** A client on the app's Redis client, or on a new connection to `url`. */
  static async connect(options: ClientOptions): Promise<RunpollerClient> {
    if (options.redis) return new RunpollerClient({ ...options, redis: options.redis });
    const redis = createClient({ url: options.url ?? "redis://127.0.0.1:6379/0" });
    redis.on("error", () => undefined); // reconnects; commands reject meanwhile
    const client = new RunpollerClient({ ...options, redis }, true);
    await redis.connect();
    return client;
  }

  /** Disconnect, when `connect` opened the connection (an app's own client is left open). */
  async close(): Promise<void> {
    if (this.#owned && this.redis.isOpen) await this.redis.close();
  }

  key(kind: "events" | "result" | "run" | "cancel", runId: string): string {
    return `${this.prefix}:${kind}:${runId}`;
  }

  /** Check and enqueue a job; returns the logical run id. Idempotent per run id. */
  async enqueue(job: Job): Promise<string> {
    const checked = validateJob(job);
    const runId = runIdOf(checked);
    const payload: Record<string, unknown> = { ...checked };
    const key = payload.api_key;
    if (typeof key === "string" && !isEncrypted(key)) {
      if (this.#ring.size === 0) {
        throw new InvalidJobError(
          "api_key: would be stored in plaintext: pass secretKeys (RUNPOLLER_SECRET_KEYS) to encrypt it",
        );
      }
      payload.api_key = encryptApiKey(key, this.#ring);
    }
    const now = Date.now();
    const body = JSON.stringify({ f: FN_RUN, a: [payload], k: {}, t: null, et: now });
    const member = `run:${runId}`;
    await this.redis
      .multi()
      .set(ARQ_JOB_PREFIX + member, body, {
        expiration: { type: "PX", value: JOB_EXPIRES_MS },
        condition: "NX",
      })
      .zAdd(this.queueName, { score: now, value: member }, { condition: "NX" })
      .exec();
    return runId;
  }

  /**
   * Every event of the run after `after`, until (and including) the final one. Reads on a
   * connection of its own (a blocking XREAD would hold up the app's other commands).
   */
  async *events(runId: string, options: EventsOptions = {}): AsyncGenerator<StreamEvent> {
    const key = this.key("events", checkRunId(runId));
    const { signal, blockMs = 5000 } = options;
    let last = options.after ?? "0-0";
    signal?.throwIfAborted();
    const conn = this.redis.duplicate();
    conn.on("error", () => undefined);
    const stop = () => conn.destroy();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      await conn.connect();
      for (;;) {
        let reply;
        try {
          reply = await conn.xRead({ key, id: last }, { BLOCK: blockMs, COUNT: 100 });
        } catch (error) {
          signal?.throwIfAborted();
          throw error;
        }
        for (const stream of reply ?? []) {
          for (const { id, message } of stream.messages) {
            last = id;
            const fields = message as Record<string, string>;
            const event = JSON.parse(fields.data ?? "null") as ReceivedEvent;
            event.type ??= fields.type as ReceivedEvent["type"];
            yield { id, event };
            if (event.type === "final") return;
          }
        }
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      if (conn.isOpen) conn.destroy();
    }
  }

  /** The final event, or null while the run is in flight. */
  async result(runId: string): Promise<FinalEvent | null> {
    const raw = await this.redis.get(this.key("result", checkRunId(runId)));
    return raw === null ? null : (JSON.parse(raw) as FinalEvent);
  }

  /** The final event, waiting up to `timeoutMs` (WaitTimeoutError after; the run goes on). */
  async wait(runId: string, options: { timeoutMs?: number } = {}): Promise<FinalEvent> {
    const existing = await this.result(runId);
    if (existing) return existing;
    const signal =
      options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
    try {
      for await (const { event } of this.events(runId, { signal })) {
        if (event.type === "final") return event;
      }
    } catch (error) {
      if (signal?.aborted) {
        throw new WaitTimeoutError(`run ${runId} did not end within ${options.timeoutMs} ms`);
      }
      throw error;
    }
    throw new Error(`the event stream of run ${runId} ended without a final event`);
  }

  /**
   * Answer one round of tool calls (`{tool_call_id: output}`, and the calls that failed as
   * `errors`: `{tool_call_id: message}`, sent as `success: false` to an agent turn); returns
   * the entry id.
   */
  async submitToolOutputs(
    runId: string,
    round: number,
    outputs: Record<string, string>,
    errors: Record<string, string> = {},
  ): Promise<string> {
    checkRunId(runId);
    if (!Number.isInteger(round) || round < 1) {
      throw new InvalidJobError(`round: must be an integer >= 1 (got ${JSON.stringify(round)})`);
    }
    const items: Array<{ tool_call_id: string; output?: string; error?: string }> = Object.entries(
      outputs,
    ).map(([id, output]) => {
      if (typeof output !== "string") {
        throw new InvalidJobError(`outputs.${id}: must be a string (JSON.stringify it)`);
      }
      return { tool_call_id: id, output };
    });
    for (const [id, error] of Object.entries(errors)) {
      if (typeof error !== "string") throw new InvalidJobError(`errors.${id}: must be a string`);
      items.push({ tool_call_id: id, error });
    }
    return this.redis.xAdd(
      `${this.prefix}:replies`,
      "*",
      { run_id: runId, round: String(round), outputs: JSON.stringify(items) },
      { TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: STREAM_MAXLEN } },
    );
  }

  /** Ask the workers to cancel the run; nothing is written once it has its result. */
  async cancel(runId: string, reason = ""): Promise<CancelOutcome> {
    checkRunId(runId);
    const reply = (await this.redis.eval(CANCEL_SCRIPT, {
      keys: [this.key("result", runId), this.key("cancel", runId), `${this.prefix}:cancels`],
      arguments: [reason, String(Date.now()), String(CANCEL_TTL_S), String(STREAM_MAXLEN), runId],
    })) as [number, string];
    if (reply[0] === 0) {
      const status = jsonObject(reply[1])?.status;
      return {
        run_id: runId,
        outcome: "already_ended",
        ...(typeof status === "string" ? { final_status: status } : {}),
      };
    }
    return { run_id: runId, outcome: "requested", entry_id: reply[1] };
  }

  /** What Redis knows of the run now; null when it has no record, result or queued job. */
  async status(runId: string): Promise<RunView | null> {
    checkRunId(runId);
    const [record, rawResult, cancel, queued, body, events] = (await this.redis
      .multi()
      .hGetAll(this.key("run", runId))
      .get(this.key("result", runId))
      .hGetAll(this.key("cancel", runId))
      .zScore(this.queueName, `run:${runId}`)
      .get(`${ARQ_JOB_PREFIX}run:${runId}`)
      .xLen(this.key("events", runId))
      .execAsPipeline()) as unknown as [
      Record<string, string>,
      string | null,
      Record<string, string>,
      number | null,
      string | null,
      number,
    ];
    const hasRecord = Object.keys(record).length > 0;
    if (!hasRecord && rawResult === null && queued === null) return null;
    const state = jsonObject(record.state) ?? {};
    const result = jsonObject(rawResult) as FinalEvent | null;
    const phase = typeof state.phase === "string" ? state.phase : null;
    let status: RunStatus = "queued";
    if (rawResult !== null || "final" in record) status = "ended";
    else if (hasRecord) status = phase === "awaiting_outputs" ? "requires_action" : "in_flight";
    const queuedJob = (jsonObject(body)?.a as unknown[] | undefined)?.[0];
    const job = hasRecord ? jsonObject(record.job) : ((queuedJob ?? null) as typeof state | null);
    const deadline = typeof state.deadline === "number" ? Math.trunc(state.deadline * 1000) : null;
    return {
      run_id: runId,
      status,
      job: job ? shownJob(job) : null,
      phase,
      owner: record.owner || null,
      deadline_ms: deadline,
      round: typeof state.round === "number" ? state.round : 0,
      pending_calls: Array.isArray(state.pending_calls) ? state.pending_calls.map(String) : [],
      cancel_request: Object.keys(cancel).length > 0 ? cancel : null,
      queued_at: queued,
      events: Number(events),
      final_status: result?.status ?? null,
      result,
    };
  }
}
