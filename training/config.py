"""Every training knob in one typed, frozen place; the command line is generated from it, the manifest records it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.query_tower import QueryTowerSpec

PRESETS: dict[str, dict[str, Any]] = {
    # The TFRS tutorial "Building deep retrieval models": random 80/20 split, Adagrad 0.1, batch 2048,
    # 32-wide embeddings, 1,000 timestamp buckets, 300 epochs, held-out figures every 5 epochs, no sampling-bias
    # correction.
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
        "timestamp_buckets": 1000,
        "history_length": 0,
        "item_item_dim": 0,
        "item_item_prior": 0,
        "history_ratings": False,
        "positive_min_rating": 0.0,
        "history_min_rating": 0.0,
        "rating_weight": 0.0,
        "candidate_genres": False,
        "user_dropout": 0.0,
        "movie_dropout": 0.0,
        "evaluate_temporal": False,
        "refit": False,
    },
    # A first version to serve while the whole job runs (`make up`): the default model from one short fit on
    # every rating, unscored; the evaluated version that follows replaces it.
    "first": {
        "epochs": 8,
        "evaluate": False,
    },
}


class TrainConfig(BaseModel):
    """One training run. Each field's description is its --option help; `--preset tutorial` sets the tutorial's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field("ml-100k", description="Label for the manifest, and the data-dir subfolder to look in.")
    layers: tuple[int, ...] = Field((64, 32), description="Dense stack on each tower, e.g. 64,32; ReLU but last.")
    embedding_dim: int = Field(32, gt=0, description="Width of every id, text and timestamp embedding.")
    optimizer: Literal["adagrad", "adam"] = Field("adam", description="adam, or adagrad (the tutorial's).")
    learning_rate: float = Field(0.001, gt=0, description="Optimizer step size.")
    batch_size: int = Field(2048, gt=0, description="Ratings per step; also the in-batch negatives per positive.")
    epochs: int = Field(30, gt=0, description="Passes over the training ratings.")
    sampling_bias_correction: bool = Field(
        True, description="Subtract log(sampling probability) from logits (Yi et al. 2019): stops demoting hits."
    )
    history_length: int = Field(
        20, ge=0, description="Latest movies rated before the query that the query tower reads; 0: none."
    )
    user_dropout: float = Field(
        0.8, ge=0, lt=1, description="Share of examples trained without user_id, for users the model never saw."
    )
    movie_dropout: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="Share of examples whose movie_id is blanked, so a movie added after training (POST /movies) "
        "is placed by its title and reaches users' lists (without: never; docs/results.md).",
    )
    title_token_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of title words read as out-of-vocabulary while training, so a word no training title "
        "had (a new movie's name, a year after the data) reads as a learnt 'unknown word', not a random vector.",
    )
    history_pooling: Literal["mean", "positional", "attention"] = Field(
        "positional",
        description="mean; positional: a learned softmax weight per history position (starts as mean); attention: "
        "self-attention blocks over the history (SASRec-like), read at its newest movie.",
    )
    attention_blocks: int = Field(1, ge=1, description="With attention pooling: self-attention blocks.")
    attention_heads: int = Field(1, ge=1, description="With attention pooling: heads per block (divide the width).")
    attention_dropout: float = Field(
        0.2, ge=0, lt=1, description="With attention pooling: dropout on each block's attention and feed-forward."
    )
    history_recent: int = Field(
        0, ge=0, description="Newest history movies also read one by one from their own table (0: none)."
    )
    item_item_dim: int = Field(
        64,
        ge=0,
        description="Width of an item-to-item channel appended to both towers past their dense stacks: the "
        "history pooled (one learned weight per position) from its own table, against the movie's own vector "
        "(FISM); 0: none, or no history.",
    )
    item_item_prior: int = Field(
        128,
        ge=0,
        description="Rank of a fixed EASE prior added to the item-item channel (training/item_item_prior.py): "
        "EASE's weights on the training ratings, factorised, the query pooling its history's rows and the "
        "movie adding its own; 0: none, or no history. 128 against 0: protocol T top-10 0.158 -> 0.185 on test "
        "(3 seeds, read from liked ratings), at no cost in training time; a movie added later borrows its "
        "content neighbours' rows (service/borrowed_prior.py). docs/results.md.",
    )
    item_item_prior_gain: float | None = Field(
        0.625,
        gt=0,
        description="The EASE prior's weight against the learned channels (its scores are scaled to spread 1 "
        "per user); unset: learned with the rest (worse: docs/results.md). Chosen by benchmarks/ease_prior_gain.py.",
    )
    item_item_prior_in_training: bool = Field(
        False,
        description="The towers train with the EASE prior in their scores (learning around it); off: they train "
        "without it and it joins at inference, a blend of the trained model and EASE.",
    )
    item_item_prior_min_rating: float = Field(
        4.0,
        ge=0,
        le=5,
        description="Ratings below this many stars are left out of the EASE prior's rating matrix, so it learns "
        "what people who liked a movie liked next (0: every rating). 4 against 0 on validation (3 seeds, "
        "benchmarks/ease_prior_gain.py --min-rating): liked top-10 +0.006 on T and B, disliked -0.029 and -0.020, "
        "all ratings -0.004.",
    )
    item_item_prior_popularity: float = Field(
        0.0,
        ge=0,
        le=2,
        description="Each target movie's EASE weights are divided by its rating count to this power, so the prior "
        "favours popular movies less (0: plain EASE). 0.5 cost T top-10 0.010 on validation (seed 42), so 0: "
        "docs/results.md.",
    )
    item_item_prior_lambda: float = Field(1000.0, gt=0, description="The EASE prior's ridge weight.")
    item_item_prior_movies: int = Field(
        10_000,
        gt=0,
        description="The EASE prior covers this many most-rated movies (its inverse is movies^2 in memory); "
        "the rest, and movies added later, have none.",
    )
    history_ratings: bool = Field(
        False,
        description="The history's stars scale each history movie's pooling weight (a learned multiplier per "
        "star level, negative allowed), so a 1-star rating moves the query away from that movie.",
    )
    history_rating_scale: Literal["learned", "signed"] = Field(
        "learned",
        description="With history_ratings: learned, one trained multiplier per star level (starting at 1); "
        "signed, fixed at (stars - 3) / 2, so 1 star weighs -1, 3 stars nothing and 5 stars +1.",
    )
    history_min_rating: float = Field(
        2.5,
        ge=0,
        le=5,
        description="Ratings below this many stars are left out of every history the query reads (training, "
        "scoring, serving), so a 1- or 2-star rating is not read as taste; they stay seen and excluded; 0: every "
        "rating is read (docs/results.md).",
    )
    rating_weight: float = Field(
        0.15,
        ge=0,
        description="Share of each user's score spread that the rating term may move (contract/rating_model.py: "
        "a matrix factorisation of the stars, the user folded in from every rating they have, 1-star ones "
        "included); 0: no term. 0.15 is the largest of 0, 0.1, 0.15, 0.2, 0.3, 0.5 whose T and B top-100 stay "
        "within 0.01 of 0 on validation, 3 seeds (benchmarks/rating_channel.py). On test, T liked top-10 / "
        "top-100 0.206 / 0.658 -> 0.212 / 0.671, T disliked top-10 0.133 -> 0.116, B top-100 0.729 -> 0.721.",
    )
    rating_factors: int = Field(16, ge=0, description="Factors of the rating term's matrix factorisation.")
    rating_reg: float = Field(10.0, gt=0, description="Ridge weight of the rating term's fit and fold-in.")
    rating_demote_pool: int = Field(
        100,
        ge=0,
        description="The best movies of each answer re-ordered so that those the user is predicted to dislike "
        "come last among them (contract/rating_model.py); 0: none. Every top-k with k >= the pool keeps its movies, "
        "so top-100 cannot move. Pool 100, margin 0, penalty 10: the lowest T disliked top-10 of 49 settings whose "
        "T and B liked top-10 stay within 0.01 of none on validation, 3 seeds (benchmarks/rating_demotion.py). On "
        "test, T liked / disliked top-10 0.211 / 0.117 -> 0.206 / 0.071; T and B over all ratings top-10 0.183 / "
        "0.240 -> 0.164 / 0.207 (a dislike is a rating too), top-100 unchanged.",
    )
    rating_demote_margin: float = Field(
        0.0, ge=0, description="Predicted stars below the user's own average a movie may be before it is pushed down."
    )
    rating_demote_penalty: float = Field(
        10.0, ge=0, description="Score a pushed-down movie loses per predicted star past the margin, in units of s_u."
    )
    rating_user_bias_penalty: float = Field(
        30.0,
        gt=0,
        description="Ridge weight of a user's own bias when their ratings are folded into the rating term, as a "
        "multiple of rating_reg (contract/rating_model.py: RatingModel.user_bias_penalty); the fit's is 1e-3. "
        "At 1e-3 a user whose stars are all alike (Star Wars alone at 1 star) is fit by the bias alone and the "
        "term predicts nothing about which movies they will dislike. 30: the largest T liked minus disliked "
        "top-10 of 0.001-30 whose T and B top-100 stay within 0.01 of 0.001, on validation, 3 seeds "
        "(benchmarks/rating_fold_in.py); every figure moved by 0.005 or less. On test, T liked / disliked "
        "top-10 0.206 / 0.071 -> 0.209 / 0.071, B 0.269 / 0.091 -> 0.270 / 0.086.",
    )
    positive_min_rating: float = Field(
        0.0,
        ge=0,
        le=5,
        description="Ratings below this many stars are not training targets (they stay in the histories); 0: "
        "every rating is a positive.",
    )
    loss: Literal["in_batch", "full_softmax"] = Field(
        "in_batch",
        description="in_batch: a softmax over the batch's other movies (TFRS Retrieval); full_softmax: over "
        "every movie of the catalogue (cheap at thousands of movies).",
    )
    remove_accidental_hits: bool = Field(
        False, description="Do not count a batch's other copies of the positive movie as its negatives."
    )
    normalize_embeddings: bool = Field(
        False, description="L2-normalise both towers' outputs, so scores are cosines (pair with a temperature)."
    )
    temperature: float = Field(1.0, gt=0, description="Logits are divided by it in the loss; below 1 sharpens.")
    candidate_genres: bool = Field(
        True,
        description='Movie tower also reads the mean of its genres\' embeddings, from a genres input ("A|B"), so '
        "a movie added after training is placed by its genres too: new movies placed better, known ones unchanged "
        "on validation (docs/results.md).",
    )
    candidate_year: bool = Field(False, description="Movie tower also reads its release year's bucket (from title).")
    year_bucket_width: int = Field(5, gt=0, description="Years per release-year bucket; unknown years get their own.")
    distribute: Literal["auto", "default", "mirrored", "multi_worker"] = Field(
        "auto",
        description="tf.distribute strategy: multi_worker (TF_CONFIG's cluster), mirrored (this host's GPUs), "
        "default (one device); auto picks by TF_CONFIG and the GPUs. Only the chief exports.",
    )
    seed: int = Field(42, description="Drives the split, the shuffling and the weight initialisation.")
    split: Literal["random", "temporal"] = Field("random", description="random, or temporal (hold out the latest).")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the ratings held out for evaluation.")
    evaluate_on: Literal["test", "validation"] = Field(
        "test",
        description="validation: score on ratings carved from the training part (same protocols), for choosing "
        "settings; the test ratings stay unseen.",
    )
    evaluate: bool = Field(
        True,
        description="Fit and score protocols A/B (and T) before the served fit; off: only the served fit on every "
        "rating, unscored (a first version in about a minute).",
    )
    evaluate_temporal: bool = Field(
        True, description="Also fit on the earliest ratings and score protocol T on the latest (one more fit)."
    )
    refit: bool = Field(
        True, description="Serve a model refit on every rating (held-out ones too), not the evaluated one."
    )
    timestamp_buckets: int = Field(50, gt=1, description="Equal-width timestamp buckets over the training range.")
    max_title_tokens: int = Field(10_000, gt=1, description="Title vocabulary size (TextVectorization).")
    eval_every: int = Field(5, gt=0, description="Epochs between held-out evaluations (the training curve).")
    eval_max_queries: int = Field(200_000, gt=0, description="Cap on held-out ratings scored (ML-25M holds 5M).")
    eval_max_cells: int = Field(
        20_000_000_000,
        gt=0,
        description="Cap on held-out ratings x movies scored per evaluation (a million movies: 20,000 queries).",
    )
    eval_batch_size: int = Field(4096, gt=0, description="Queries and movies per tower call when evaluating.")
    eval_score_chunk: int = Field(2048, gt=0, description="Queries scored against every movie at once (memory).")
    index: Literal["auto", "brute_force", "tree_ah"] = Field(
        "auto", description="ScaNN searcher: auto is exact up to index_exact_max movies, tree_ah above."
    )
    index_exact_max: int = Field(
        20_000, gt=0, description="Largest catalogue searched exactly (cheap up to there: docs/scale.md)."
    )
    index_recall_queries: int = Field(1000, gt=0, description="Held-out queries that measure the index's recall.")
    index_recall_k: int = Field(100, gt=0, description="k of the index's recall@k against brute force.")
    index_leaves_to_search_share: float = Field(
        0.1, gt=0, le=1, description="tree_ah: share of the sqrt(n) leaves searched per query."
    )
    index_training_sample: int = Field(250_000, gt=0, description="tree_ah: points that train the partitioner.")
    index_dimensions_per_block: int = Field(2, gt=0, description="tree_ah: dimensions per hashing block.")
    index_quantization_threshold: float = Field(0.2, description="tree_ah: anisotropic quantization threshold.")
    index_reorder: int = Field(1000, gt=0, description="tree_ah: exact re-scoring budget; recall depends on it most.")

    @field_validator("layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: Any) -> Any:
        """Accepts `64,32` from the command line as well as a sequence."""
        if isinstance(value, str):
            try:
                return tuple(int(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError(f"expects comma-separated integers like 64,32, got {value!r}") from None
        return value

    @field_validator("layers")
    @classmethod
    def _layers_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(size <= 0 for size in value):
            raise ValueError("must be one or more positive sizes, e.g. 64,32")
        return value

    @model_validator(mode="after")
    def _unscored_means_refit(self) -> TrainConfig:
        if not self.evaluate and not self.refit:
            raise ValueError("evaluate=False serves the fit on every rating: it needs refit=True")
        return self

    @model_validator(mode="after")
    def _recent_within_history(self) -> TrainConfig:
        if self.history_recent > self.history_length:
            raise ValueError(
                f"history_recent={self.history_recent} reads more movies than history_length={self.history_length}"
            )
        return self

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TrainConfig:
        if self.history_pooling == "attention" and self.embedding_dim % self.attention_heads:
            raise ValueError(f"attention_heads={self.attention_heads} must divide embedding_dim={self.embedding_dim}")
        return self

    @model_validator(mode="after")
    def _untrained_prior_has_a_gain(self) -> TrainConfig:
        if self.item_item_prior and not self.item_item_prior_in_training and self.item_item_prior_gain is None:
            raise ValueError("item_item_prior_in_training=False cannot learn the prior's gain: set its gain")
        return self

    @property
    def rating_demote(self) -> tuple[int, float, float]:
        """(pool, margin, penalty) of the rating term's re-ordering of each answer's best movies."""
        return self.rating_demote_pool, self.rating_demote_margin, self.rating_demote_penalty

    @property
    def item_item_width(self) -> int:
        """Columns the item-item channel adds to both towers: `item_item_dim` plus `item_item_prior`, or 0
        without a history to pool (the query spec's answer).
        One answer for both, so their embeddings always have the same width."""
        return self.query_spec.item_item_width

    @property
    def query_spec(self) -> QueryTowerSpec:
        """The query tower's structure: what training/model.py builds and the exported NumPy mirror must match."""
        return QueryTowerSpec(
            layers=self.layers,
            history_length=self.history_length,
            history_pooling=self.history_pooling,
            history_recent=self.history_recent,
            item_item_dim=self.item_item_dim,
            item_item_prior=self.item_item_prior,
            history_ratings=self.history_ratings,
            normalize=self.normalize_embeddings,
            attention_blocks=self.attention_blocks,
            attention_heads=self.attention_heads,
        )

    @property
    def label(self) -> str:
        """How a run is named in progress bars, plots and benchmark rows: `layers=64,32`."""
        return f"layers={','.join(map(str, self.layers))}"


def build_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Preset values first, then explicit overrides (None means 'not given'), validated once.

    Raises:
        ValueError: an unknown preset; pydantic.ValidationError: a bad value.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values.update(PRESETS[preset])
    values.update({key: value for key, value in overrides.items() if value is not None})
    return TrainConfig(**values)
