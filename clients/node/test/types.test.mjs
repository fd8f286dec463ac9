// src/protocol.ts must be what the protocol's pydantic models give today.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";

import { OUTPUT, render } from "../scripts/gen-types.mjs";

it("the committed TypeScript types match the protocol's JSON Schemas", async () => {
  const committed = readFileSync(OUTPUT, "utf8");
  assert.ok(committed === (await render()), "src/protocol.ts is out of date: run npm run gen-types");
});
