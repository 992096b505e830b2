"""Is this call running in a script's top-level code, outside `if __name__ == "__main__":`?

A local cluster's worker processes are started by spawn, which re-imports the script that started
them; a script that calls preprocess at top level without the guard would then start a cluster in
every worker, each starting more: it hangs. Such a script gets worker threads instead.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ADVICE = ('put the call under `if __name__ == "__main__":` (worker processes re-import the script); '
          "running this local cluster's workers as threads instead")


def unguarded_script_line() -> int | None:
    """The line of the running script's top-level statement when it is not under the __main__ guard, else None
    (a notebook, `python -c`, a guarded script, a call from a function not reached from top-level code)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            return None if _is_main_guard(node) else line
    return None


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    sides = [node.test.left, *node.test.comparators]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return isinstance(node.test.ops[0], ast.Eq) and names == ["__name__"] and values == ["__main__"]
