// `npm pack` gives a package that imports by name, whose README holds the five-line quick
// start, and whose types check that quick start (tsc, strict).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dir = mkdtempSync(join(tmpdir(), "runpoller-pack-"));
after(() => rmSync(dir, { recursive: true, force: true }));

it("packs a package that works from its tarball", () => {
  const [{ filename }] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], {
      cwd: ROOT,
      encoding: "utf8",
    }),
  );
  const modules = join(dir, "node_modules");
  mkdirSync(join(modules, "runpoller-client"), { recursive: true });
  execFileSync("tar", ["-xzf", join(dir, filename), "-C", join(modules, "runpoller-client"), "--strip-components=1"]);
  for (const dep of ["redis", "@redis"]) symlinkSync(join(ROOT, "node_modules", dep), join(modules, dep));
  symlinkSync(join(ROOT, "node_modules", "@types"), join(modules, "@types"));

  const readme = readFileSync(join(modules, "runpoller-client", "README.md"), "utf8");
  const quick = readme.split("## Quick start")[1].split("```js\n")[1].split("```")[0];
  assert.equal(quick.trim().split("\n").length, 5, quick);
  assert.match(quick, /from "runpoller-client"/);

  const loaded = execFileSync(
    "node",
    ["--input-type=module", "-e", 'import * as rp from "runpoller-client"; console.log(Object.keys(rp).sort().join(","))'],
    { cwd: dir, encoding: "utf8" },
  );
  for (const name of ["RunpollerClient", "parseKeyRing", "encryptApiKey", "decryptApiKey", "newKey", "InvalidJobError"]) {
    assert.ok(loaded.split(",").includes(name), `${name} is not exported: ${loaded}`);
  }
  writeFileSync(join(dir, "quick.ts"), quick);
  // An app's own node-redis clients (RESP3, the default, and RESP2) fit, and events narrow.
  writeFileSync(
    join(dir, "app.ts"),
    `import { createClient } from "redis";
import { RunpollerClient, type FinalEvent } from "runpoller-client";
for (const redis of [createClient(), createClient({ RESP: 2 })]) {
  const rp = await RunpollerClient.connect({ redis, keyPrefix: "app" });
  for await (const { event } of rp.events("run_1")) {
    if (event.type === "requires_action") console.log(event.tool_calls[0]?.parsed_arguments);
    if (event.type === "final") console.log(event.error?.code);
  }
  const final: FinalEvent = await rp.wait("run_1", { timeoutMs: 10 });
  console.log(final.status, (await rp.status("run_1"))?.status);
}
`,
  );
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: ["node"], skipLibCheck: true },
      files: ["quick.ts", "app.ts"],
    }),
  );
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  execFileSync(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", dir], { encoding: "utf8" });
});
