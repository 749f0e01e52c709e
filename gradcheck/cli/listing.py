"""``gradcheck list``: the registered layer variants, one line each.

:func:`add_list_command` adds the subcommand; :func:`cmd_list` prints every registered variant
(the built-in catalogue and third-party ``gradcheck.layers`` entry points) with its input kind,
default shapes and tags, in columns, and names on stderr each entry point that failed to load.
Exit 0, or 1 when an entry point failed to load.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..literals import format_shape
from ..registry import entry_point_errors, registered_layers
from .common import EXIT_FAIL, EXIT_OK, wrap

LIST_EXAMPLES = """\
examples:
  gradcheck list
  gradcheck list | grep whitening

columns: name, input kind, default shapes, tags.
"""


def add_list_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``list`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    lst = subparsers.add_parser(
        "list",
        help="list the registered layer variants",
        description=wrap(
            "List every registered layer variant with its input kind, default shapes "
            "and tags. An entry point that fails to load is named on stderr (exit status 1)."
        ),
        epilog=LIST_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lst.set_defaults(handler=cmd_list)
    return lst


def cmd_list(args: argparse.Namespace) -> int:
    """Run ``gradcheck list``; returns the exit code."""
    specs = registered_layers()
    width = max(len(s.name) for s in specs) if specs else 4
    shapes = {s.name: " ".join(format_shape(shape) for shape in s.shapes) for s in specs}
    shape_width = max([16, *(len(v) for v in shapes.values())])
    for s in specs:
        tags = ",".join(sorted(s.tags))
        print(f"{s.name:<{width}}  {s.input:<17} {shapes[s.name]:<{shape_width}} {tags}".rstrip())
    errors = entry_point_errors()
    for name, err in errors:
        print(f"entry point {name} failed to load: {err}", file=sys.stderr)
    return EXIT_FAIL if errors else EXIT_OK
