"""Nothing in tracetap imports the CLI: commands wrap library functions, never the other way."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tracetap"


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in `path`, those inside functions too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module == "tracetap":  # from tracetap import cli
                for alias in node.names:
                    yield node.lineno, f"tracetap.{alias.name}"


def test_no_module_outside_the_cli_imports_it() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        # cli/ is the CLI; __main__.py is `python -m tracetap`, its other entry point.
        if rel.parts[0] == "cli" or rel == Path("__main__.py"):
            continue
        for line, module in _imports(path):
            if module == "tracetap.cli" or module.startswith("tracetap.cli."):
                wrong.append(f"tracetap/{rel}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)
