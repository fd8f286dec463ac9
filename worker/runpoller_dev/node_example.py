"""``make demo``'s Node step: examples/node/weather.mjs, the Node client's app, when Node is here.

Without Node.js (or without the built client: ``make node-install``, which ``make demo`` runs
when npm is there) the demo says so and carries on; the Python example still runs.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node" / "weather.mjs"
BUILT = ROOT / "clients" / "node" / "dist" / "index.js"


async def run_node_example(env: dict[str, str]) -> bool:
    """Run the Node example against the demo's worker; False only when it ran and failed."""
    node = shutil.which("node")
    if not EXAMPLE.exists():
        print("\n(examples/node is not here: installed without the source tree)")
        return True
    if node is None:
        print("\nNode example (examples/node/weather.mjs): not run, Node.js is not installed")
        return True
    if not BUILT.exists():
        print("\nNode example (examples/node/weather.mjs): not run, run `make node-install` first")
        return True
    print("\nNode example app (examples/node/weather.mjs), a separate process:")
    proc = await asyncio.create_subprocess_exec(
        node, str(EXAMPLE), "What's the weather in Paris?", env=env
    )
    try:
        return await asyncio.wait_for(proc.wait(), 30) == 0
    except TimeoutError:
        print("Node example: no end within 30 s, stopped")
        proc.kill()
        await proc.wait()
        return False
