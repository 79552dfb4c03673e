"""Commands that serve: the REST API and the page, and the offline demo. They need the `serve` extra."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from actionrec.cli.common import console, fail, needs_serving_extra, needs_training_extra
from actionrec.cli.config_options import config_options
from actionrec.errors import ActionrecError


def _serve(
    given: dict[str, Any],
    model: Path | None = typer.Argument(None, help=r"An exported model.onnx \[env ACTIONREC_MODEL].",
                                        show_default=False),
) -> None:
    """Serve the REST API and the web page. Set ACTIONREC_API_KEY to require a key on prediction routes."""
    needs_serving_extra()
    from actionrec.serve.app import serve as run_server
    from actionrec.serve.settings import load_settings

    try:
        settings = load_settings(model_path=model, **given)
        run_server(settings)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))


def _serve_without_the_extra(
    model: Path | None = typer.Argument(None, help=r"An exported model.onnx \[env ACTIONREC_MODEL].",
                                        show_default=False),
) -> None:
    """Serve the REST API and the web page: needs the serve extra (pip install 'actionrec\\[serve]'), which
    lists the options."""
    needs_serving_extra()


def _serve_command() -> tuple[Callable[..., Any], dict[str, Any]]:
    """`serve` with an option for each ServerSettings field (see actionrec.cli.config_options), and what
    Click must know about it. A base install has no settings to read: there, `serve` takes any
    options and says which extra it needs."""
    try:
        from actionrec.serve.settings import ServerSettings
    except ImportError:
        return _serve_without_the_extra, {"ignore_unknown_options": True, "allow_extra_args": True}
    return config_options(ServerSettings)(_serve), {}


serve, SERVE_CONTEXT = _serve_command()


def demo(
    folder: Path = typer.Option(Path("demo"), help="Where the dataset, the run and the model go."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    rebuild: bool = typer.Option(False, help="Train again even if the folder has a model."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Build the model and stop."),
    seed: int = typer.Option(0, help="Seed of the generated clips and of training (README gives the accuracy "
                                     "of several)."),
) -> None:
    """Offline demo: generate data, train, export, then serve the page and API on http://HOST:PORT."""
    from actionrec.cli.demo import DemoPaths, build_demo_model, try_line

    if rebuild or not DemoPaths(folder).model.exists():
        needs_training_extra()
    if not no_serve:
        needs_serving_extra()
    try:
        model = build_demo_model(folder, console, rebuild=rebuild, seed=seed)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))
    url = f"http://{host}:{port}"
    examples = DemoPaths(folder).examples
    console.rule("Serving")
    console.print(f"Web page: [bold]{url}/[/bold]   API docs: {url}/docs")
    console.print(try_line(model, examples, url), markup=False)
    if no_serve:
        return
    from actionrec.cli.demo import build_imagenet_base
    from actionrec.serve.app import serve as run_server
    from actionrec.serve.settings import ServerSettings

    # The page's Teach mode keeps its example clips and taught models beside the demo's model, and
    # builds on ImageNet features where the weights are at hand (else on the synthetic encoder).
    base, why_not = build_imagenet_base(folder, console)
    if why_not:
        console.print(f"[yellow]Teach mode:[/yellow] {escape(why_not)}")
    else:
        console.print(f"Teach it your own actions: [bold]{url}/#teach[/bold] (a few camera clips each, on "
                      "ImageNet features)")
    run_server(ServerSettings(model_path=model, host=host, port=port, examples_dir=examples,
                              data_dir=DemoPaths(folder).teach, teach_base=base, teach_note=why_not))
