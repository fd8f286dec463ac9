"""Actions: OpenAPI 3.0/3.1 specs → function tools (Assistants or Responses shape).

Use `convert_text` (or `convert_document` for parsed data); it never raises for a bad spec:
problems come back in `Conversion.errors`, one readable message each. `validate_strict`
checks any schema against the strict-mode rules. See docs/actions.md.
"""

from runpoller_actions.arguments import Argument
from runpoller_actions.checker import Problem, validate_strict, validate_tool, validate_tools
from runpoller_actions.convert import convert_document, convert_text
from runpoller_actions.diagnostics import Diagnostic
from runpoller_actions.strict import StrictResult, make_strict
from runpoller_actions.tools import FORMATS, Conversion, Format, Operation, Tool

__all__ = [
    "FORMATS",
    "Argument",
    "Conversion",
    "Diagnostic",
    "Format",
    "Operation",
    "Problem",
    "StrictResult",
    "Tool",
    "convert_document",
    "convert_text",
    "make_strict",
    "validate_strict",
    "validate_tool",
    "validate_tools",
]
