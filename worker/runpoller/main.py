"""Not an arq settings module: ``arq runpoller.main.WorkerSettings`` says so and exits.

arq's CLI always builds arq's own ``Worker`` class from a settings class (it has no hook to
choose another), and that worker lacks what runpoller's needs: batch intake and surviving a
Redis outage (runpoller/worker/arqworker.py). Rather than start a lesser worker under the same
name, this module refuses with one line pointing at ``runpoller worker``.
"""

from __future__ import annotations

import sys

print(
    "runpoller: start workers with `runpoller worker` (or `python -m runpoller worker`): "
    "arq's CLI would run arq's plain Worker, without runpoller's batch intake and outage "
    "survival",
    file=sys.stderr,
)
raise SystemExit(2)
