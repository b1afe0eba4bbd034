"""Command line: `python -m training fetch|synth|train|compare|retrain|promote`.

The training and gate options are generated from TrainConfig and GateConfig (training/options.py): every
field is an option, documented once, by its description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from contract.manifest import Metrics
from training.canary import CanaryConfig
from training.config import TrainConfig, build_config
from training.gate import GateConfig
from training.options import config_options, describe

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Folder with MovieLens files (or a dataset subfolder).")]
ModelsDir = Annotated[Path, typer.Option("--models-dir", help="Where versions are exported.")]
Preset = Annotated[str | None, typer.Option(help="'tutorial' reproduces the TFRS deep-retrieval tutorial.")]
Progress = Annotated[bool, typer.Option(help="Show the per-epoch progress bar.")]
RatingsUrl = Annotated[
    str | None,
    typer.Option(
        envvar="RECSYS_RATINGS_URL",
        help="The service's ratings store (e.g. sqlite:///data/ratings.db): its ratings are trained on too.",
    ),
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _config(preset: str | None, values: dict[str, Any]) -> TrainConfig:
    """One validated config; bad values end the command with a readable message."""
    try:
        return build_config(preset, **values)
    except ValidationError as exc:
        _fail(describe(exc))
    except ValueError as exc:
        _fail(str(exc))


def _table(metrics: Metrics) -> str:
    if not metrics.model:
        return "not scored (evaluate=False): a first version, no held-out figures"
    ks = list(next(iter(metrics.model.values())))
    lines = [f"{'':22}" + "".join(f"{k:>9}" for k in ks)]
    for who, tables in (("model", metrics.model), ("most_popular", metrics.most_popular)):
        for protocol in tables:
            lines.append(f"{who + ' (' + protocol + ')':22}" + "".join(f"{tables[protocol][k]:9.4f}" for k in ks))
    lines.append(f"split={metrics.split} test_size={metrics.test_size}  (A: all movies; B: seen excluded)")
    if metrics.temporal is not None:
        lines.append(f"T: held out {metrics.temporal.how} ({metrics.temporal.test_size} ratings), asked at their time")
    return "\n".join(lines)


def _train(
    configs: list[TrainConfig],
    data_dir: Path,
    models_dir: Path,
    promote: bool,
    progress: bool,
    ratings_url: str | None = None,
) -> None:
    """Runs the one orchestration and prints each version's table; the last lines are the version directories."""
    import logging

    from contract.ratings import RatingsStoreError, opened_store
    from training.data import DataError
    from training.train import train_versions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with opened_store(ratings_url) as store:
            trained = train_versions(
                configs, data_dir, models_dir, promote_version=promote, progress=progress, ratings=store
            )
    except (DataError, RatingsStoreError) as exc:
        _fail(str(exc))
    if not trained:
        typer.echo("worker: trained in lockstep with the chief, which exports and promotes")
        return
    for version in trained:
        typer.echo(f"\n{version.config.label}\n{_table(version.metrics)}")
    typer.echo(f"promoted: {promote}")
    for version in trained:
        typer.echo(str(version.version_dir))


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
def synth(
    users: Annotated[int, typer.Option(help="Users; each rates at least once (ML-25M: 162,541).")],
    movies: Annotated[int, typer.Option(help="Movies in movies.csv; some may go unrated (ML-25M: 62,423).")],
    ratings: Annotated[int, typer.Option(help="Ratings, exactly; at most movies/2 per user (ML-25M: 25,000,095).")],
    out: Annotated[Path, typer.Option(help="Folder for ratings.csv and movies.csv (GroupLens CSV layout).")],
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
) -> None:
    """Write a synthetic MovieLens with planted tastes, popularity skew and drift. The last line is OUT."""
    from training.synth import SynthSpec, write_synth

    try:
        spec = SynthSpec(users=users, movies=movies, ratings=ratings, seed=seed)
    except ValueError as exc:
        _fail(str(exc))
    result = write_synth(spec, out)
    rated = int((result.movie_counts > 0).sum())
    typer.echo(f"{ratings:,} ratings by {users:,} users of {rated:,} of {movies:,} movies (seed {seed})")
    typer.echo(str(out))


@app.command()
@config_options(TrainConfig, into="values")
def train(
    values: dict[str, Any],
    data_dir: DataDir = Path("data"),
    models_dir: ModelsDir = Path("models"),
    preset: Preset = None,
    promote: Annotated[bool, typer.Option(help="Point models/CURRENT at the new version.")] = True,
    progress: Progress = True,
    ratings_url: RatingsUrl = None,
) -> None:
    """Train, evaluate and export a version, and promote it. The last line printed is its directory."""
    _train([_config(preset, values)], data_dir, models_dir, promote, progress, ratings_url)


@app.command()
@config_options(TrainConfig, into="values", skip=frozenset({"layers"}))
def compare(
    values: dict[str, Any],
    layers: Annotated[list[str], typer.Option("--layers", help="A dense stack to compare, e.g. 64,32; repeat it.")],
    data_dir: DataDir = Path("data"),
    models_dir: ModelsDir = Path("models"),
    preset: Preset = None,
    progress: Progress = True,
) -> None:
    """Train several --layers stacks on one split; export each with a shared curve, promote none."""
    _train([_config(preset, {**values, "layers": stack}) for stack in layers], data_dir, models_dir, False, progress)


@app.command()
@config_options(CanaryConfig, into="canary_values", prefix="canary")
@config_options(GateConfig, into="gate_values", prefix="gate")
@config_options(TrainConfig, into="values")
def retrain(
    values: dict[str, Any],
    gate_values: dict[str, Any],
    canary_values: dict[str, Any],
    data_dir: DataDir = Path("data"),
    models_dir: ModelsDir = Path("models"),
    preset: Preset = None,
    ratings_url: RatingsUrl = None,
    keep: Annotated[
        int, typer.Option(min=1, help="Newest versions kept besides CURRENT, PROTECTED, the replaced.")
    ] = 3,
    every: Annotated[
        float | None, typer.Option(help="Repeat until SIGTERM: a cycle whenever the newest version is this old (s).")
    ] = None,
    canary: Annotated[
        bool,
        typer.Option(
            help="Canary mode: a candidate that passes goes to models/CANARY; a later cycle promotes or withdraws "
            "it on its online liked share (needs --ratings-url)."
        ),
    ] = False,
) -> None:
    """Train a candidate on the data and the stored ratings, gate it, promote it or keep it refused, prune.

    The last line printed is the candidate's directory; exit status 3 means the gate refused it (the reasons
    are printed, logged and recorded in MODELS_DIR/gate/<version>.json).
    """
    import logging

    from contract.pointers import PointerError
    from contract.ratings import RatingsStoreError
    from training.data import DataError
    from training.retrain import RetrainBusyError, retrain_every
    from training.retrain import retrain as retrain_cycle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(preset, values)
    try:
        gate = GateConfig(**gate_values)
    except ValidationError as exc:
        _fail(describe(exc, prefix="gate"))
    try:
        canary_config = CanaryConfig(**canary_values) if canary else None
    except ValidationError as exc:
        _fail(describe(exc, prefix="canary"))
    if every is not None:
        retrain_every(every, config, data_dir, models_dir, gate, keep, ratings_url=ratings_url, canary=canary_config)
        return
    try:
        result = retrain_cycle(config, data_dir, models_dir, gate, keep, ratings_url, canary_config)
    except (DataError, FileNotFoundError, RetrainBusyError, RatingsStoreError, PointerError, ValueError) as exc:
        _fail(str(exc))
    if result.canary_action not in (None, "start"):
        typer.echo(f"canary {result.candidate}: {result.canary_action}; {' '.join(result.reasons)}")
        typer.echo(f"serving {result.serving}; canary {result.canary}; record: {result.record}")
        if result.canary_action == "withdraw":
            raise typer.Exit(code=3)
        return
    from training.gate import GateDecision

    for check in GateDecision.model_validate_json(result.record.read_text()).checks:
        typer.echo(f"{'ok' if check.ok else 'FAIL':>4}  {check.name}: {check.detail}")
    verdict = "promoted" if result.promoted else "refused (kept for inspection)"
    if result.canary_action == "start":
        verdict = f"passed, on canary beside {result.serving} (a later cycle judges it)"
    typer.echo(f"{verdict}; serving {result.serving}; pruned {', '.join(result.pruned) or 'nothing'}")
    typer.echo(f"gate record: {result.record}")
    typer.echo(str(models_dir / result.candidate))
    if not result.promoted and result.canary_action != "start":
        raise typer.Exit(code=3)


@app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="A version name under MODELS_DIR, e.g. 20261122T103000Z.")],
    models_dir: ModelsDir = Path("models"),
    protect: Annotated[
        bool, typer.Option(help="Also write models/PROTECTED, so the retrainer never prunes it.")
    ] = False,
) -> None:
    """Point models/CURRENT at VERSION: every server polling it switches (this is the rollback)."""
    from contract.pointers import promote

    try:
        promote(models_dir, version, protect=protect)
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(f"CURRENT -> {version}" + (" (protected from pruning)" if protect else ""))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
