"""``python -m runpoller``: the ``runpoller`` command."""

from runpoller.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
