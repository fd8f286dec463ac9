"""The Redis room: every Redis command the worker sends, and its Lua scripts (scripts/)."""
