// A calling app in Node, end to end: create a run, hand it to runpoller, answer its function
// call. The Node twin of examples/weather_app.py; `make demo` runs both against the fake
// server. Against any Assistants-compatible server:
//
//   REDIS_URL=redis://127.0.0.1:6379/0 ASSISTANTS_BASE_URL=http://127.0.0.1:8011/v1 \
//   ASSISTANTS_API_KEY=sk-... node examples/node/weather.mjs "What's the weather in Paris?"
//
// With RUNPOLLER_SECRET_KEYS set (workers running ASSISTANTS_API_KEY=user_provided), the
// app's key travels with the job, encrypted. An app installs the package (clients/node, npm
// name runpoller-client) and imports it by name; this example imports it from the source tree.
import { RunpollerClient } from "../../clients/node/dist/index.js";

const WEATHER = { Paris: "21 °C and sunny", London: "14 °C and drizzle", Tokyo: "18 °C, clear" };

/** The app's own function, which the model asks it to call. */
function getWeather(city) {
  return JSON.stringify({ city, weather: WEATHER[city] ?? "unknown" });
}

async function main(question) {
  const { ASSISTANTS_BASE_URL: baseUrl, ASSISTANTS_API_KEY: apiKey, RUNPOLLER_SECRET_KEYS: secretKeys } = process.env;
  const created = await fetch(`${baseUrl}/threads/runs`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${apiKey}`,
      "content-type": "application/json",
      "openai-beta": "assistants=v2",
    },
    body: JSON.stringify({
      assistant_id: process.env.EXAMPLE_ASSISTANT_ID ?? "asst_demo",
      thread: { messages: [{ role: "user", content: question }] },
      // Only the fake server reads this; a real server just stores it.
      metadata: { fake_scenario: "requires_action" },
    }),
  });
  if (!created.ok) throw new Error(`creating the run: HTTP ${created.status} ${await created.text()}`);
  const run = await created.json();

  const client = await RunpollerClient.connect({
    url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0",
    queueName: process.env.RUNPOLLER_QUEUE_NAME ?? "runpoller:queue",
    keyPrefix: process.env.RUNPOLLER_KEY_PREFIX ?? "runpoller",
    secretKeys,
  });
  try {
    const runId = await client.enqueue({
      kind: "assistants_run",
      thread_id: run.thread_id,
      run_id: run.id,
      ...(secretKeys ? { api_key: apiKey } : {}),
    });
    console.log(`node app: asked ${JSON.stringify(question)}; run ${runId} handed to runpoller`);
    let final;
    for await (const { event } of client.events(runId)) {
      if (event.type === "status") {
        console.log(`node app: run is ${event.status}`);
      } else if (event.type === "requires_action") {
        const outputs = {};
        for (const call of event.tool_calls) {
          outputs[call.id] = getWeather(String(call.parsed_arguments?.city ?? ""));
          console.log(`node app: the model called ${call.name}(${call.arguments}) → ${outputs[call.id]}`);
        }
        await client.submitToolOutputs(runId, event.round, outputs);
      } else if (event.type === "final") {
        final = event;
      }
    }
    console.log(`node app: ${final.status}: ${final.output_text ?? final.reason}`);
    return final.status === "completed" ? 0 : 1;
  } finally {
    await client.close();
  }
}

main(process.argv.slice(2).join(" ") || "What's the weather in Paris?").then(
  (code) => process.exit(code),
  (error) => {
    console.error(`node app: ${error.message}`);
    process.exit(2);
  },
);
