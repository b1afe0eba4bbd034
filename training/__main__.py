"""Command line: `python -m training fetch|train|compare|retrain`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from training.config import TrainConfig, build_config, parse_layers

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Folder with MovieLens files (or a dataset subfolder).")]
ModelsDir = Annotated[Path, typer.Option("--models-dir", help="Where versions are exported.")]
Dataset = Annotated[str, typer.Option(help="Dataset label, and the data-dir subfolder to look in.")]
Preset = Annotated[str | None, typer.Option(help="'tutorial' reproduces the TFRS deep-retrieval tutorial.")]
EmbeddingDim = Annotated[int | None, typer.Option()]
Optimizer = Annotated[str | None, typer.Option(help="adagrad or adam")]
LearningRate = Annotated[float | None, typer.Option()]
BatchSize = Annotated[int | None, typer.Option()]
Epochs = Annotated[int | None, typer.Option()]
Split = Annotated[str | None, typer.Option(help="random (default) or temporal")]
EvalEvery = Annotated[int | None, typer.Option(help="Epochs between validation passes.")]
Layers = Annotated[
    list[str] | None,
    typer.Option("--layers", help="Dense stack per tower, e.g. 64,32. Repeat to train and compare several."),
]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _configs(preset: str | None, layers: list[str] | None, overrides: dict[str, Any]) -> list[TrainConfig]:
    """One validated config per --layers value; bad values end the command with a readable message."""
    try:
        stacks = [parse_layers(text) for text in layers] if layers else [None]
        return [build_config(preset, layers=stack, **overrides) for stack in stacks]
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        _fail(problems)
    except ValueError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


def _table(metrics: dict[str, Any]) -> str:
    ks = list(metrics["model"]["A"])
    lines = [f"{'':22}" + "".join(f"{k:>9}" for k in ks)]
    for who in ("model", "most_popular"):
        for protocol in ("A", "B"):
            row = metrics[who][protocol]
            lines.append(f"{who + ' (' + protocol + ')':22}" + "".join(f"{row[k]:9.4f}" for k in ks))
    lines.append(f"split={metrics['split']} test_size={metrics['test_size']}  (A: all movies; B: seen excluded)")
    return "\n".join(lines)


@app.command()
def fetch(
    data_dir: DataDir = Path("data"),
    dataset: Annotated[
        str, typer.Option(help="ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small")
    ] = "ml-100k",
    verify: Annotated[bool, typer.Option(help="Check the archive against GroupLens' published md5.")] = True,
) -> None:
    """Download MovieLens into DATA_DIR/<dataset>/ (ml-100k falls back to the RecBole wheel on PyPI)."""
    from training.fetch import FetchError
    from training.fetch import fetch as fetch_dataset

    try:
        typer.echo(str(fetch_dataset(dataset, data_dir, verify=verify, log=lambda m: typer.echo(m, err=True))))
    except FetchError as exc:
        _fail(str(exc))


@app.command()
def train(
    data_dir: DataDir = Path("data"),
    models_dir: ModelsDir = Path("models"),
    dataset: Dataset = "ml-100k",
    preset: Preset = None,
    layers: Layers = None,
    embedding_dim: EmbeddingDim = None,
    optimizer: Optimizer = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    epochs: Epochs = None,
    seed: Annotated[int | None, typer.Option()] = None,
    split: Split = None,
    eval_every: EvalEvery = None,
    promote: Annotated[bool, typer.Option(help="Point models/CURRENT at the new version.")] = True,
    progress: Annotated[bool, typer.Option(help="Show the per-epoch progress bar.")] = True,
) -> None:
    """Train, evaluate and export a version; with several --layers, compare them on one split (no promotion).

    The last line printed is the new version directory (one line per version when comparing).
    """
    from training.data import DataError
    from training.pointers import promote as promote_version
    from training.train import compare as compare_runs
    from training.train import export_run, fit, prepare

    overrides = dict(dataset=dataset, embedding_dim=embedding_dim, optimizer=optimizer,
                     learning_rate=learning_rate, batch_size=batch_size, epochs=epochs, seed=seed,
                     split=split, eval_every=eval_every)  # fmt: skip
    configs = _configs(preset, layers, overrides)
    try:
        if len(configs) > 1:
            results = compare_runs(configs, data_dir, models_dir, progress=progress)
            for run, _ in results:
                typer.echo(f"\nlayers={','.join(map(str, run.config.layers))}\n{_table(run.metrics)}")
            typer.echo("")
            for _, version_dir in results:
                typer.echo(str(version_dir))
            return
        prepared = prepare(configs[0], data_dir)
        run = fit(configs[0], prepared, progress=progress)
        version_dir = export_run(run, prepared, models_dir)
        if promote:
            promote_version(models_dir, version_dir.name)
    except DataError as exc:
        _fail(str(exc))
    index = json.loads((version_dir / "manifest.json").read_text())["index"]
    typer.echo(_table(run.metrics))
    typer.echo(f"index: {index['kind']} recall@100={index['recall_at_100']:.3f}; promoted: {promote}")
    typer.echo(str(version_dir))


@app.command()
def retrain(
    data_dir: DataDir = Path("data"),
    models_dir: ModelsDir = Path("models"),
    dataset: Dataset = "ml-100k",
    preset: Preset = None,
    layers: Annotated[str | None, typer.Option("--layers", help="Dense stack per tower, e.g. 64,32.")] = None,
    embedding_dim: EmbeddingDim = None,
    optimizer: Optimizer = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    epochs: Epochs = None,
    seed: Annotated[int | None, typer.Option(help="Keep the current version's, so the gate can compare.")] = None,
    split: Split = None,
    eval_every: EvalEvery = None,
    keep: Annotated[int, typer.Option(min=1, help="Newest versions kept besides CURRENT, PINNED, the replaced.")] = 3,
    tolerance: Annotated[float | None, typer.Option(help="Most B top-k may drop below the current [0.01].")] = None,
    min_recall: Annotated[float | None, typer.Option(help="Least ScaNN recall@100 against brute force [0.9].")] = None,
    gate_k: Annotated[int | None, typer.Option(help="Which protocol-B top-k the gate compares [100].")] = None,
    allow_incomparable: Annotated[
        bool, typer.Option(help="Promote although the held-out data differs (a deliberate data change).")
    ] = False,
    every: Annotated[
        float | None, typer.Option(help="Repeat until SIGTERM: a cycle whenever the newest version is this old (s).")
    ] = None,
) -> None:
    """Train a candidate, gate it against the current version, promote it or keep it refused, prune old versions.

    The last line printed is the candidate's directory; exit status 3 means the gate refused it (the reasons are
    printed, logged and recorded in MODELS_DIR/gate/<version>.json).
    """
    import logging

    from training.data import DataError
    from training.gate import GateConfig
    from training.retrain import RetrainBusyError, retrain_every
    from training.retrain import retrain as retrain_cycle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = dict(dataset=dataset, embedding_dim=embedding_dim, optimizer=optimizer,
                     learning_rate=learning_rate, batch_size=batch_size, epochs=epochs, seed=seed,
                     split=split, eval_every=eval_every)  # fmt: skip
    config = _configs(preset, [layers] if layers else None, overrides)[0]
    gate_values = {"tolerance": tolerance, "min_recall": min_recall, "k": gate_k}
    try:
        gate = GateConfig(
            allow_incomparable=allow_incomparable,
            **{key: value for key, value in gate_values.items() if value is not None},
        )
    except ValidationError as exc:
        _fail("; ".join(f"gate {e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    if every is not None:
        retrain_every(every, config, data_dir, models_dir, gate, keep)
        return
    try:
        result = retrain_cycle(config, data_dir, models_dir, gate, keep)
    except (DataError, FileNotFoundError, RetrainBusyError) as exc:
        _fail(str(exc))
    for check in json.loads(result.record.read_text())["checks"]:
        typer.echo(f"{'ok' if check['ok'] else 'FAIL':>4}  {check['name']}: {check['detail']}")
    verdict = "promoted" if result.promoted else "refused (kept for inspection)"
    typer.echo(f"{verdict}; serving {result.serving}; pruned {', '.join(result.pruned) or 'nothing'}")
    typer.echo(f"gate record: {result.record}")
    typer.echo(str(models_dir / result.candidate))
    if not result.promoted:
        raise typer.Exit(code=3)


@app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="A version name under MODELS_DIR, e.g. 20261122T103000Z.")],
    models_dir: ModelsDir = Path("models"),
    pin: Annotated[bool, typer.Option(help="Also write models/PINNED, so the retrainer never prunes it.")] = False,
) -> None:
    """Point models/CURRENT at VERSION: every server polling it switches (this is the rollback)."""
    from training.pointers import promote

    try:
        promote(models_dir, version, pin=pin)
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(f"CURRENT -> {version}" + (" (pinned)" if pin else ""))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
