"""Commands that serve: the REST API and the page, and the offline demo. They need the `serve` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.markup import escape

from actionrec.cli.common import console, fail, needs_serving_extra, needs_training_extra
from actionrec.errors import ActionrecError


def _setting_help(name: str, text: str = "") -> str:
    """A serve flag's help, with its default and variable, from ServerSettings (when the serve extra
    is installed; without it the command only says how to install it)."""
    try:
        from actionrec.serve.settings import ENV_PREFIX, ServerSettings
    except ImportError:
        return text or name.replace("_", " ")
    field = ServerSettings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    shown = "none" if default in (None, []) else default
    return f"{text or (field.description or '').capitalize()} [default: {shown}; env {ENV_PREFIX}{name.upper()}]"


def serve(
    model: Path | None = typer.Argument(None, help="An exported model.onnx [env ACTIONREC_MODEL].", show_default=False),
    host: str | None = typer.Option(None, help=_setting_help("host"), show_default=False),
    port: int | None = typer.Option(None, help=_setting_help("port", "Port to listen on"), show_default=False),
    max_upload_mb: float | None = typer.Option(None, help=_setting_help("max_upload_mb"), show_default=False),
    max_duration_s: float | None = typer.Option(None, help=_setting_help("max_duration_s"), show_default=False),
    decode_timeout_s: float | None = typer.Option(None, help=_setting_help("decode_timeout_s"), show_default=False),
    workers: int | None = typer.Option(None, help=_setting_help("workers"), show_default=False),
    threads: int | None = typer.Option(None, help=_setting_help("threads"), show_default=False),
    max_pending: int | None = typer.Option(None, help=_setting_help("max_pending"), show_default=False),
    uncertain_below: float | None = typer.Option(None, help=_setting_help("uncertain_below"), show_default=False),
    max_uploads: int | None = typer.Option(None, help=_setting_help("max_uploads"), show_default=False),
    upload_budget_mb: float | None = typer.Option(None, help=_setting_help("upload_budget_mb"), show_default=False),
    max_connections: int | None = typer.Option(None, help=_setting_help("max_connections"), show_default=False),
    upload_idle_timeout_s: float | None = typer.Option(None, help=_setting_help("upload_idle_timeout_s"),
                                                          show_default=False),
    upload_min_kbps: float | None = typer.Option(None, help=_setting_help("upload_min_kbps"), show_default=False),
    header_timeout_s: float | None = typer.Option(None, help=_setting_help("header_timeout_s"),
                                                     show_default=False),
    drain_timeout_s: float | None = typer.Option(None, help=_setting_help("drain_timeout_s"), show_default=False),
    allowed_hosts: str | None = typer.Option(None, help=_setting_help("allowed_hosts"), show_default=False),
    examples: Path | None = typer.Option(None, help=_setting_help("examples_dir"), show_default=False),
    data_dir: Path | None = typer.Option(None, help=_setting_help("data_dir"), show_default=False),
    teach_base: Path | None = typer.Option(None, help=_setting_help("teach_base"), show_default=False),
    teach_max_actions: int | None = typer.Option(None, help=_setting_help("teach_max_actions"), show_default=False),
    teach_max_clips: int | None = typer.Option(None, help=_setting_help("teach_max_clips"), show_default=False),
    teach_max_clip_mb: float | None = typer.Option(None, help=_setting_help("teach_max_clip_mb"),
                                                      show_default=False),
    max_live: int | None = typer.Option(None, help=_setting_help("max_live"), show_default=False),
    live_idle_timeout_s: float | None = typer.Option(None, help=_setting_help("live_idle_timeout_s"),
                                                        show_default=False),
    cors_origins: str | None = typer.Option(None, help=_setting_help("cors_origins"), show_default=False),
    device: Literal["auto", "cpu", "cuda"] | None = typer.Option(None, help=_setting_help("device"),
                                                                    show_default=False),
    precision: Literal["auto", "fp32", "int8"] | None = typer.Option(None, help=_setting_help("precision"),
                                                                        show_default=False),
    batching: bool | None = typer.Option(None, "--batching/--no-batching", help=_setting_help("batching"),
                                            show_default=False),
    batch_window_ms: float | None = typer.Option(None, help=_setting_help("batch_window_ms"), show_default=False),
    batch_max_frames: int | None = typer.Option(None, help=_setting_help("batch_max_frames"), show_default=False),
) -> None:
    """Serve the REST API and the web page. Set ACTIONREC_API_KEY to require a key on prediction routes."""
    # Every option but MODEL and --examples is named as its ServerSettings field.
    given = {name: value for name, value in locals().items() if name not in ("model", "examples")}
    needs_serving_extra()
    from actionrec.serve.app import serve as run_server
    from actionrec.serve.settings import load_settings

    try:
        settings = load_settings(model_path=model, examples_dir=examples, **given)
        run_server(settings)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))


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
