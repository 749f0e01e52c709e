"""Text the user types, to values: shapes, ``NAME=VALUE`` pairs, Python literals, references.

Only ``ast.literal_eval`` ever turns text into a value (never ``eval``): a literal is a number, a
string, ``True``/``False``/``None``, or a tuple, list, dict or set of literals. Every parser here
raises ``ValueError`` with a message fit for the command line; the front ends add the option's
name.

Forms
    shape       ``AxBxC...``, any rank, positive integers: ``16x4``, ``2x3x8x8``, ``5``
    assignment  ``NAME=TEXT`` with ``NAME`` a Python identifier
    reference   ``MODULE:ATTR`` or ``MODULE:ATTR(ARGS)``, ``ARGS`` literals, keywords allowed:
                ``mypkg.layers:BatchNorm(4, eps=1e-3)``
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

Shape = Tuple[int, ...]


def parse_shape(text: str) -> Shape:
    """``"2x3x8x8"`` to ``(2, 3, 8, 8)``; any rank from 1, every dimension a positive integer."""
    parts = text.strip().lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"shape must look like NxD or AxBxC... (for example 16x4 or 2x3x8x8), got {text!r}"
        ) from None
    if any(n < 1 for n in shape):
        raise ValueError(f"shape dimensions must be positive, got {text!r}")
    return shape


def format_shape(shape: Sequence[Any]) -> str:
    """``(2, 3, 8, 8)`` to ``"2x3x8x8"``, the form :func:`parse_shape` reads."""
    return "x".join(str(n) for n in shape)


def parse_assignment(text: str, what: str = "NAME=VALUE") -> Tuple[str, str]:
    """``"NAME=TEXT"`` to ``(NAME, TEXT)``; ``NAME`` must be a Python identifier."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"expected {what} with NAME an argument name, got {text!r}")
    return name, value


def parse_literal(text: str) -> Any:
    """A Python literal (``ast.literal_eval``): numbers, strings, booleans, ``None``, tuples,
    lists, dicts and sets of them. Anything else (a name, a call, an expression) is refused."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(
            f"{text!r} is not a Python literal (a number, a quoted string, True/False/None, or a "
            "tuple, list or dict of literals)"
        ) from None


@dataclass(frozen=True)
class Reference:
    """A parsed ``MODULE:ATTR`` or ``MODULE:ATTR(ARGS)``: what to import and how to call it."""

    text: str
    module: str
    attr: str
    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    called: bool = False  # ARGS were given, even if empty: ``MODULE:ATTR()``

    def call_text(self) -> str:
        """``ATTR(ARGS)`` as the user wrote the arguments, for messages."""
        return self.text.partition(":")[2]


def _dotted(node: ast.expr) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def parse_reference(text: str, option: str = "--layer") -> Reference:
    """``MODULE:ATTR`` or ``MODULE:ATTR(ARGS)`` (constructor arguments as literals).

    ``ATTR`` may be dotted (``Outer.Inner``). Each argument is read with ``ast.literal_eval``
    on its own, so ``BatchNorm(4, eps=1e-3)`` is allowed and ``BatchNorm(n)`` is not.
    """
    example = f"{option} mypkg.layers:MyLayer or {option} 'mypkg.layers:MyLayer(4, eps=1e-3)'"
    module, sep, rest = text.strip().partition(":")
    module, rest = module.strip(), rest.strip()
    if not sep or not module or not rest:
        raise ValueError(f"{option} expects MODULE:ATTR (for example {example}), got {text!r}")
    if not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"{option} {text}: {module!r} is not a module name")
    try:
        tree = ast.parse(rest, mode="eval").body
    except SyntaxError:
        raise ValueError(
            f"{option} {text}: cannot read {rest!r}; expected ATTR or ATTR(ARGS) with literal "
            f"arguments (for example {example})"
        ) from None
    if isinstance(tree, ast.Call):
        attr = _dotted(tree.func)
        if attr is None:
            raise ValueError(f"{option} {text}: expected ATTR(ARGS) with ATTR a (dotted) name")
        args = []
        for node in tree.args:
            if isinstance(node, ast.Starred):
                raise ValueError(f"{option} {text}: *arguments are not supported")
            args.append(_literal_node(node, text, option))
        kwargs: Dict[str, Any] = {}
        for kw in tree.keywords:
            if kw.arg is None:
                raise ValueError(f"{option} {text}: **arguments are not supported")
            kwargs[kw.arg] = _literal_node(kw.value, text, option)
        return Reference(text.strip(), module, attr, tuple(args), kwargs, called=True)
    attr = _dotted(tree)
    if attr is None:
        raise ValueError(
            f"{option} {text}: expected ATTR or ATTR(ARGS) after the colon (for example {example})"
        )
    return Reference(text.strip(), module, attr)


def _literal_node(node: ast.expr, text: str, option: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        source = ast.unparse(node) if hasattr(ast, "unparse") else "an argument"
        raise ValueError(
            f"{option} {text}: argument {source} is not a Python literal; constructor arguments "
            "must be numbers, quoted strings, True/False/None, or tuples, lists or dicts of them"
        ) from None
