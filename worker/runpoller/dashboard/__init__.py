"""The operators' web dashboard (``runpoller dashboard``): overview, runs, dead letters.

Reads Redis only, as ``runpoller stats`` does (no worker needed); acts (cancel a run,
requeue or purge dead letters) only when started with ``RUNPOLLER_DASHBOARD_TOKEN``.
See docs/operations.md, "The dashboard".
"""
