"""The ``runpoller`` command line (``runpoller.cli.main:main``)."""
