"""What every command shares: the consoles, failing with a message and an exit code, and the checks
that an optional part of the package is installed."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)  # long lines stay whole in logs and pipes


def _no_type_for_flags() -> None:
    """Typer's help shows every option's type, so a flag reads `--json <bool>` as if it took a
    value; a flag shows none here, as in Click's own help."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # a Typer that shows no types
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_type_for_flags()
err_console = Console(stderr=True, soft_wrap=True)

# Exit codes: 0 done; 1 some of the work failed (a video, a setting); 2 the command line is wrong
# (Click's own); 3 nothing could run at all (the model file is missing or unreadable).
EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING_RAN = 1, 2, 3


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}")  # messages name extras like actionrec[serve]
    raise typer.Exit(code)


def needs_training_extra() -> None:
    try:
        import torch  # noqa: F401  (only whether it imports)
        import torchvision  # noqa: F401
    except ImportError:
        fail("this command needs PyTorch: install the training extra with `pip install 'actionrec[train]'`.")


def needs_serving_extra() -> None:
    try:
        import fastapi  # noqa: F401  (only whether it imports)
        import pydantic_settings  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        fail(f"this command needs the server's packages ({exc.name} is missing): install them with "
             "`pip install 'actionrec[serve]'`.")
