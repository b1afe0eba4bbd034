"""Every training knob in one typed, frozen place; written verbatim into each version's manifest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PRESETS: dict[str, dict[str, Any]] = {
    # The TFRS tutorial "Building deep retrieval models": random 80/20 split, Adagrad 0.1, batch 2048,
    # 32-wide embeddings, 300 epochs, validation every 5 epochs.
    "tutorial": {
        "embedding_dim": 32,
        "optimizer": "adagrad",
        "learning_rate": 0.1,
        "batch_size": 2048,
        "epochs": 300,
        "split": "random",
        "test_fraction": 0.2,
        "eval_every": 5,
        "sampling_bias_correction": False,
    },
}


class TrainConfig(BaseModel):
    """One training run. Defaults give a quick, sensible model; `--preset tutorial` reproduces the paper trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = "ml-100k"  # a label for the manifest; the data itself comes from --data-dir
    layers: tuple[int, ...] = (64, 32)  # dense stack on top of each tower; ReLU on all but the last
    embedding_dim: int = Field(32, gt=0)  # width of every id/text/timestamp embedding
    optimizer: Literal["adagrad", "adam"] = "adagrad"
    learning_rate: float = Field(0.1, gt=0)
    batch_size: int = Field(2048, gt=0)  # also the number of in-batch negatives per positive
    epochs: int = Field(30, gt=0)
    # In-batch negatives over-sample popular movies, so the plain softmax learns to demote them; subtracting
    # log(sampling probability) from the logits (Yi et al., RecSys 2019) undoes that. The tutorial has it off.
    sampling_bias_correction: bool = True
    seed: int = 42  # drives the split, the shuffling and the weight initialisation
    split: Literal["random", "temporal"] = "random"  # temporal holds out the latest ratings
    test_fraction: float = Field(0.2, gt=0, lt=1)
    timestamp_buckets: int = Field(1000, gt=1)  # Discretization buckets over the training time range
    max_title_tokens: int = Field(10_000, gt=1)  # TextVectorization vocabulary for titles
    eval_every: int = Field(5, gt=0)  # epochs between validation passes (protocol A, for the curve)
    eval_max_queries: int = Field(200_000, gt=0)  # cap on held-out ratings scored offline (ML-25M is 5M)
    index: Literal["auto", "brute_force", "tree_ah"] = "auto"  # auto: exact below index_exact_max movies
    index_exact_max: int = Field(20_000, gt=0)  # exact search is ~0.1 ms at this size, so no ANN needed
    index_recall_queries: int = Field(1000, gt=0)  # queries used to measure the index's recall@100

    @field_validator("layers")
    @classmethod
    def _layers_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(size <= 0 for size in value):
            raise ValueError("layers must be one or more positive sizes, e.g. 64,32")
        return value

    @property
    def output_dim(self) -> int:
        """Width of the query and candidate embeddings (the last dense layer)."""
        return self.layers[-1]


def parse_layers(text: str) -> tuple[int, ...]:
    """Parses `64,32` into (64, 32), with a message a command-line user can act on."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"--layers expects comma-separated integers like 64,32, got {text!r}") from exc
    if not sizes or any(size <= 0 for size in sizes):
        raise ValueError(f"--layers expects positive sizes like 64,32, got {text!r}")
    return sizes


def build_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Preset values first, then explicit overrides (None means 'not given'), validated once."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values.update(PRESETS[preset])
    values.update({key: value for key, value in overrides.items() if value is not None})
    return TrainConfig(**values)
