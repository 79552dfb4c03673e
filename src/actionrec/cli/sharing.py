"""`actionrec push`: share a model on the Hugging Face Hub (`hf://OWNER/NAME` loads it anywhere)."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.markup import escape

from actionrec.cli.common import EXIT_USAGE, console, fail
from actionrec.errors import ActionrecError

REPO_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def push(
    source: Path = typer.Argument(..., help="A run folder with its exported model.onnx, or a model file."),
    repo: str = typer.Argument(..., help="The Hub repository to create or update: OWNER/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    dry_run: Path | None = typer.Option(None, "--dry-run", help="Write the files that would be uploaded "
                                                                     "(model.onnx, README.md, report images) to this "
                                                                     "folder, and upload nothing.", show_default=False),
) -> None:
    """Upload a model and a model card generated from it to the Hugging Face Hub; log in first
    (`hf auth login`, or set HF_TOKEN)."""
    from actionrec.modelfile.publish import push as push_model
    from actionrec.modelfile.publish import push_files

    if not REPO_PATTERN.match(repo):
        fail(f"{repo!r} is not a Hub repository name: write OWNER/NAME.", EXIT_USAGE)
    try:
        if dry_run is not None:
            files = push_files(source, repo, dry_run)
            console.print(f"Would upload to {escape(repo)}: " + ", ".join(escape(path.name) for path in files))
            return
        url = push_model(source, repo, private=private)
    except ActionrecError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001  the Hub's own errors (login, permissions, network): said plainly
        fail(f"the upload to {repo} failed: {exc}")
    console.print(f"Uploaded to {escape(url)}. Load it with hf://{escape(repo)} (Recognizer, predict, serve, ...).")
