"""``python -m runpoller_bench`` (``make bench``): runpoller beside the floor and the naive design.

One invocation starts the fake OpenAI server in its own process and measures three designs
against it, one after the other, with the same number of runs and the same poll interval,
then a section of its own:

1. **floor** (``worker/runpoller_bench/floor.py``): a bare aiohttp loop that GETs each run at the
   interval and does nothing else; the least CPU a poll can cost in Python.
2. **naive** (``worker/runpoller_bench/naive.py``): one arq job per poll, re-armed with
   ``Retry(defer=interval)``, using httpx's default client.
3. **ours**: N real worker processes (``python -m runpoller worker``) fed through
   :class:`runpoller.client.RunpollerClient`, with a duration mix, tool calls answered by the
   harness acting as the app, and a steady replenishment that keeps K runs in flight.
4. **modes** (``worker/runpoller_bench/modes.py``): how a Responses run learns that its
   response ended, four ways at once on the same run mix: fixed-interval polling, adaptive
   polling, webhooks (a real ``runpoller webhooks`` process) with a fallback poll, and
   streamed (``"stream": true``); requests per run, detection lag, CPU per run.

The first three are measured over a fixed window; ``docs/performance.md`` explains every
figure. The pieces: ``config`` (CLI), ``mix`` (run lifetimes and scripts), ``procs`` (processes and
``/proc``), ``fakectl`` (the fake server's control API), ``analysis`` (pure maths on logs and
counters), ``harness`` (the phases), ``modes`` and ``modestats`` (the delivery-modes
section and its maths), ``report`` (tables and JSON).
"""
