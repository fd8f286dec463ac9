// The Node client against a real worker, the fake OpenAI server and a real Redis: every job
// carries an API key encrypted here, which the worker (ASSISTANTS_API_KEY=user_provided)
// decrypts and sends to the fake, which accepts only that key.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { encryptApiKey, InvalidJobError, newKey, parseKeyRing, RunpollerClient } from "../dist/index.js";
import { FAKE_KEY, startStack } from "./harness.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function assistantsJob(scenario, extra = {}) {
  const run = await stack.createRun(scenario);
  return {
    kind: "assistants_run",
    id: stack.runId(scenario),
    thread_id: run.thread_id,
    run_id: run.id,
    api_key: FAKE_KEY,
    ...extra,
  };
}

describe("a run from enqueue to result", () => {
  it("enqueues once, streams accepted..final, and stores the final as the result", async () => {
    const { client } = stack;
    const job = await assistantsJob("complete", { metadata: { conversation: "c-42" } });
    const runId = await client.enqueue(job);
    assert.equal(runId, job.id);
    assert.equal(await client.enqueue(job), runId); // the same run again: a no-op
    const events = await collect(client.events(runId));
    const types = events.map(({ event }) => event.type);
    assert.equal(types[0], "accepted");
    assert.equal(types.at(-1), "final");
    assert.equal(types.filter((t) => t === "final").length, 1);
    assert.ok(types.includes("status"));
    const final = events.at(-1).event;
    assert.equal(final.status, "completed");
    assert.equal(final.output_text, "Hello from the fake OpenAI server.");
    assert.deepEqual(final.metadata, { conversation: "c-42" });
    assert.deepEqual(await client.result(runId), final);
    assert.deepEqual(await client.wait(runId, { timeoutMs: 1000 }), final);
    const view = await client.status(runId);
    assert.equal(view.status, "ended");
    assert.equal(view.final_status, "completed");
    assert.equal(view.events, events.length);
  });

  it("resumes from the id of the last event seen, missing nothing and repeating nothing", async () => {
    const { client } = stack;
    const runId = await client.enqueue(await assistantsJob("complete"));
    let first;
    for await (const item of client.events(runId)) {
      first = item; // the app stops reading here (a restart, a lost connection)
      break;
    }
    assert.equal(first.event.type, "accepted");
    const rest = await collect(client.events(runId, { after: first.id }));
    const all = await collect(client.events(runId));
    assert.deepEqual([first, ...rest].map((e) => e.id), all.map((e) => e.id));
    assert.equal(rest.at(-1).event.type, "final");
  });
});

describe("function calls", () => {
  it("answers a requires_action round; a bad reply is rejected by name and can be corrected", async () => {
    const { client } = stack;
    const runId = await client.enqueue(await assistantsJob("requires_action"));
    const seen = [];
    for await (const { event } of client.events(runId)) {
      seen.push(event.type);
      if (event.type === "requires_action") {
        assert.equal(event.round, 1);
        const [call] = event.tool_calls;
        assert.equal(call.name, "get_weather");
        assert.deepEqual(call.parsed_arguments, { city: "Paris" });
        if (!seen.includes("reply_rejected")) {
          await client.submitToolOutputs(runId, 1, { call_unknown: "{}" });
        }
      } else if (event.type === "reply_rejected") {
        assert.match(event.problems.join(" "), /call_unknown/);
        const view = await client.status(runId);
        assert.equal(view.status, "requires_action");
        assert.equal(view.round, 1);
        assert.equal(view.job.api_key, "encrypted");
        const ask = view.pending_calls;
        await client.submitToolOutputs(
          runId,
          1,
          Object.fromEntries(ask.map((id) => [id, JSON.stringify({ temp_c: 21 })])),
        );
      } else if (event.type === "final") {
        assert.equal(event.status, "completed");
        assert.equal(event.output_text, "It is sunny in Paris.");
      }
    }
    assert.deepEqual(seen.slice(-1), ["final"]);
    assert.ok(seen.includes("reply_rejected"));
  });

  it("drives a Responses run the worker creates, through a function-call round", async () => {
    const { client } = stack;
    const tool = {
      type: "function",
      name: "get_weather",
      description: "The weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } } },
      strict: false,
    };
    const runId = await client.enqueue({
      kind: "response",
      id: stack.runId("responses"),
      api_key: FAKE_KEY,
      request: {
        model: "gpt-4o",
        input: "What's the weather in Paris?",
        tools: [tool],
        metadata: { fake_scenario: "requires_action" },
      },
    });
    let final;
    for await (const { event } of client.events(runId)) {
      if (event.type === "requires_action") {
        const outputs = Object.fromEntries(event.tool_calls.map((c) => [c.id, '{"temp_c": 21}']));
        await client.submitToolOutputs(runId, event.round, outputs);
      }
      if (event.type === "final") final = event;
    }
    assert.equal(final.status, "completed", JSON.stringify(final.error));
    assert.equal(final.kind, "response");
    assert.equal(final.output_text, "It is sunny in Paris.");
  });
});

describe("an agent session turn (Agents API)", () => {
  it("follows the turn, answers its function call as failed, ends with the agent's answer", async () => {
    const { client } = stack;
    const created = await fetch(`${stack.root}/_fake/agents/sessions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ script: "tool_call", input: "Weather in Paris?" }),
    });
    const { session, turn } = await created.json();
    const runId = await client.enqueue({
      kind: "agent_turn",
      id: stack.runId("agent"),
      session_id: session.id,
      turn_id: turn.id,
      api_key: FAKE_KEY,
    });
    let final;
    for await (const { event } of client.events(runId)) {
      if (event.type === "requires_action") {
        assert.deepEqual(event.tool_calls.map((c) => [c.type, c.turn_id]), [["function", turn.id]]);
        const errors = Object.fromEntries(event.tool_calls.map((c) => [c.id, "service down"]));
        await client.submitToolOutputs(runId, event.round, {}, errors);
      }
      if (event.type === "final") final = event;
    }
    assert.equal(final.status, "completed", JSON.stringify(final.error));
    assert.equal(final.kind, "agent_turn");
    const failed = final.detail.items.find((item) => item.type === "function_call_output");
    assert.deepEqual([failed.status, failed.error], ["failed", "service down"]);
    assert.equal(final.output_text, "It is sunny in Paris.");
    assert.equal(final.detail.session_id, session.id);
  });
});

describe("an app's own RESP2 connection", () => {
  it("reads events, status, results and cancels the same way", async () => {
    const { createClient } = await import("redis");
    const { testRedisUrl } = await import("./harness.mjs");
    const redis = createClient({ url: testRedisUrl(), RESP: 2 });
    await redis.connect();
    try {
      const client = await RunpollerClient.connect({
        redis,
        queueName: `${stack.namespace}:queue`,
        keyPrefix: stack.namespace,
        secretKeys: stack.secretKeys,
      });
      const done = await client.enqueue(await assistantsJob("complete"));
      const types = (await collect(client.events(done))).map(({ event }) => event.type);
      assert.deepEqual([types[0], types.at(-1)], ["accepted", "final"]);
      assert.equal((await client.status(done)).final_status, "completed");
      assert.equal((await client.result(done)).status, "completed");
      const stopped = await client.enqueue(await assistantsJob("never_ends"));
      assert.equal((await client.cancel(stopped, "stop")).outcome, "requested");
      assert.equal((await client.wait(stopped, { timeoutMs: 15000 })).error.code, "cancelled_by_app");
      assert.equal((await client.cancel(stopped)).outcome, "already_ended");
      await client.close(); // the app's connection stays open
      assert.ok(redis.isOpen);
    } finally {
      await redis.close();
    }
  });
});

describe("a response the app created", () => {
  it("follows it by response_id through two rounds, the continuation declaring the tools", async () => {
    const { client } = stack;
    const created = await fetch(`${stack.root}/_fake/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ script: "two_rounds" }),
    });
    const response = await created.json();
    const tool = (name) => ({ type: "function", name, parameters: { type: "object" }, strict: false });
    const runId = await client.enqueue({
      kind: "response",
      id: stack.runId("two-rounds"),
      response_id: response.id,
      api_key: FAKE_KEY,
      continuation: { model: "gpt-4o", tools: [tool("get_weather"), tool("get_time")] },
    });
    const rounds = [];
    let final;
    for await (const { event } of client.events(runId)) {
      if (event.type === "requires_action") {
        rounds.push(event.tool_calls.map((c) => c.name).join());
        await client.submitToolOutputs(runId, event.round, Object.fromEntries(event.tool_calls.map((c) => [c.id, "ok"])));
      }
      if (event.type === "final") final = event;
    }
    assert.deepEqual(rounds, ["get_weather", "get_time"]);
    assert.equal(final.status, "completed", JSON.stringify(final.error));
  });
});

describe("encrypted user_provided keys", () => {
  it("stores only the encrypted key; a key under the ring's older id still decrypts", async () => {
    const { client, redis, secretKeys } = stack;
    const ring = parseKeyRing(secretKeys);
    const job = await assistantsJob("complete", { api_key: encryptApiKey(FAKE_KEY, ring, "old") });
    const runId = await client.enqueue(job);
    const plain = await assistantsJob("complete");
    const plainId = await client.enqueue(plain);
    const body = await redis.get(`arq:job:run:${plainId}`);
    assert.ok(body && !body.includes(FAKE_KEY), "the plaintext key reached Redis");
    assert.match(JSON.parse(body).a[0].api_key, /^enc:v1:node1:[A-Za-z0-9_-]+$/);
    assert.equal((await client.wait(runId, { timeoutMs: 15000 })).status, "completed");
    assert.equal((await client.wait(plainId, { timeoutMs: 15000 })).status, "completed");
    assert.equal((await client.status(plainId)).job, null); // finalize drops the job
  });

  it("ends a run whose key the workers cannot decrypt, or that has none", async () => {
    const { client, namespace } = stack;
    const stranger = await RunpollerClient.connect({
      redis: stack.redis,
      queueName: `${namespace}:queue`,
      keyPrefix: namespace,
      secretKeys: `node1:${newKey()}`,
    });
    const wrong = await stranger.enqueue(await assistantsJob("complete"));
    const final = await client.wait(wrong, { timeoutMs: 15000 });
    assert.equal(final.status, "error");
    assert.equal(final.error.code, "undecryptable_api_key");
    const { api_key: _, ...keyless } = await assistantsJob("complete");
    const none = await client.enqueue(keyless);
    assert.equal((await client.wait(none, { timeoutMs: 15000 })).error.code, "missing_api_key");
  });
});

describe("bad inputs", () => {
  it("refuses an invalid job in one line naming the field, writing nothing", async () => {
    const { client, redis, namespace } = stack;
    const id = stack.runId("bad");
    const cases = [
      [{ kind: "assistants_run", id, thread_id: "../etc", run_id: "run_1" }, /^thread_id: must match/],
      [{ kind: "assistants_run", id, run_id: "run_1" }, /^thread_id: is required$/],
      [{ kind: "assistant", id }, /^kind: must be "assistants_run", "response" or "agent_turn"/],
      [{ kind: "agent_turn", id, session_id: "s", turn_id: "t", input: "Hi" }, /^job: give exactly one of turn_id and input$/],
      [{ kind: "agent_turn", session_id: "s", input: "Hi" }, /^id: a job with input needs an id/],
      [{ kind: "agent_turn", id, turn_id: "t" }, /^session_id: is required$/],
      [{ kind: "assistants_run", id, thread_id: "t", run_id: "r", tools: [] }, /^tools: is not a field/],
      [{ kind: "assistants_run", id, thread_id: "t", run_id: "r", timeout_ms: 0 }, /^timeout_ms: must be an integer >= 1/],
      [{ kind: "response", id, response_id: "resp_1", request: {} }, /^job: give exactly one of/],
      [{ kind: "response", request: { model: "gpt-4o" } }, /^id: a job with request needs an id/],
      [{ kind: "response", id, request: { store: false } }, /^request: must not set store$/],
    ];
    for (const [job, message] of cases) {
      await assert.rejects(client.enqueue(job), (error) => {
        assert.ok(error instanceof InvalidJobError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes("\n"));
        return true;
      });
    }
    const plaintext = await RunpollerClient.connect({
      redis,
      queueName: `${namespace}:queue`,
      keyPrefix: namespace,
    });
    await assert.rejects(
      plaintext.enqueue({ kind: "assistants_run", id, thread_id: "t", run_id: "r", api_key: FAKE_KEY }),
      /api_key: would be stored in plaintext/,
    );
    assert.equal(await redis.exists(`arq:job:run:${id}`), 0);
    await assert.rejects(client.submitToolOutputs(id, 0, {}), /^InvalidJobError: round: must be an integer >= 1/);
    await assert.rejects(client.cancel("no/such run"), /invalid run id "no\/such run"/);
    assert.equal(await client.status(stack.runId("never-enqueued")), null);
  });
});

describe("timeouts and cancel", () => {
  it("times a run out at its deadline, and wait gives up at its own timeout", async () => {
    const { client } = stack;
    const runId = await client.enqueue(await assistantsJob("never_ends", { timeout_ms: 1500 }));
    await assert.rejects(client.wait(runId, { timeoutMs: 200 }), { name: "TimeoutError" });
    const final = await client.wait(runId, { timeoutMs: 15000 });
    assert.equal(final.status, "timed_out");
    assert.equal(final.error.code, "deadline_exceeded");
    assert.deepEqual(final.cancel, { reason: "deadline", outcome: "confirmed", app_reason: null });
  });

  it("cancels a run in flight; a second cancel after the end writes nothing", async () => {
    const { client, redis, namespace } = stack;
    const runId = await client.enqueue(await assistantsJob("never_ends"));
    for await (const { event } of client.events(runId)) {
      if (event.type === "status") break; // polled: the run is in flight
    }
    assert.equal((await client.status(runId)).status, "in_flight");
    const asked = await client.cancel(runId, "user pressed stop");
    assert.equal(asked.outcome, "requested");
    assert.match(asked.entry_id, /^\d+-\d+$/);
    const final = await client.wait(runId, { timeoutMs: 15000 });
    assert.equal(final.status, "cancelled");
    assert.equal(final.error.code, "cancelled_by_app");
    assert.deepEqual(final.cancel, { reason: "app", outcome: "confirmed", app_reason: "user pressed stop" });
    const cancels = await redis.xLen(`${namespace}:cancels`);
    assert.deepEqual(await client.cancel(runId), {
      run_id: runId,
      outcome: "already_ended",
      final_status: "cancelled",
    });
    assert.equal(await redis.xLen(`${namespace}:cancels`), cancels);
  });
});

describe("examples/node/weather.mjs", () => {
  it("does the function-call round trip as a separate app process, its key encrypted", async () => {
    const { execFile } = await import("node:child_process");
    const { join } = await import("node:path");
    const { REPO, testRedisUrl } = await import("./harness.mjs");
    const env = {
      ...process.env,
      REDIS_URL: testRedisUrl(),
      ASSISTANTS_BASE_URL: `${stack.root}/v1`,
      ASSISTANTS_API_KEY: FAKE_KEY,
      RUNPOLLER_SECRET_KEYS: stack.secretKeys,
      RUNPOLLER_KEY_PREFIX: stack.namespace,
      RUNPOLLER_QUEUE_NAME: `${stack.namespace}:queue`,
    };
    const out = await new Promise((ok, fail) =>
      execFile("node", [join(REPO, "examples", "node", "weather.mjs")], { env, timeout: 30000 }, (error, stdout, stderr) =>
        error ? fail(new Error(`${error.message}\n${stdout}${stderr}`)) : ok(stdout),
      ),
    );
    assert.match(out, /node app: the model called get_weather\(\{"city": "Paris"\}\) → \{"city":"Paris","weather":"21 °C and sunny"\}/);
    assert.match(out, /node app: completed: It is sunny in Paris\.$/m);
  });
});
