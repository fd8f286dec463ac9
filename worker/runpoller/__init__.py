"""runpoller: asynchronous run-polling workers for OpenAI-style APIs."""

__version__ = "0.1.0"
