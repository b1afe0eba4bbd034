"""The query tower as plain arrays (query_weights.npz) and its forward pass in NumPy.

Why: at batch 1 a SavedModel call is mostly Python and TensorFlow dispatch around a few microseconds of
arithmetic, most of a /recommend; the same tower in NumPy is an order of magnitude cheaper
(docs/serving-speed.md). It is only trusted
once it reproduces the SavedModel: `max_difference` compares the two on `probe_queries`, and the server
refuses a version whose arrays disagree with its SavedModel (the gate runs the same loader).

The forward pass mirrors training/model.py's query tower layer for layer, in float32 as Keras computes it:
  user:      StringLookup (out-of-vocabulary index 0) -> Embedding
  timestamp: clamp to [low, high] -> Bucketize(float32, boundaries) -> Embedding, and
             (float32(t) - mean) / max(sqrt(variance), 1e-7) as one more column
  history:   StringLookup ("" masked, unknown -> out-of-vocabulary) -> Embedding -> masked mean, or a softmax
             over learned per-position logits of the unmasked positions ("positional"), or the newest
             position's output of self-attention blocks over the history ("attention",
             contract/history_encoder.py); zeros when empty
  recent:    with `history_recent` N > 0, the N newest positions' lookup rows (the "" row included) in a second
             table, each its own block of N * e columns, newest first
  features concatenated in that order -> Dense layers (ReLU where `dense_relu`)
  item-item: with `item_item_embedding`, the history's lookup rows in that table, pooled with their own
             per-position logits like "positional", appended after the dense output (no kernel); its last
             `item_item_prior` columns are a fixed EASE prior already multiplied by its gain at export
  ratings:   with `history_rating_scale`, each history position's pooling weight (after normalising) is
             multiplied by a learned scalar of its rating level (round(stars) in 0..5, 0 = unknown), one table
             per pooling: a 1-star rating can weigh negatively, pushing the query away from that movie; the
             attention encoder instead adds a learned vector per rating level to each position's input
  -> optional L2 normalisation of the whole vector
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.history_encoder import RATING_LEVELS, EncoderArrays
from contract.manifest import QUERY_WEIGHTS, VersionError
from contract.user_ratings import NO_VALUE

_EPSILON = np.float32(1e-7)  # Keras's backend.epsilon(), the floor of Normalization's standard deviation
_NORM_EPSILON = np.float32(1e-12)  # tf.math.l2_normalize's floor of the squared norm
_ENCODER = "encoder_"  # query_weights.npz prefix of the history encoder's members
POOLINGS = ("mean", "positional", "attention")
MIRROR_TOLERANCE = 1e-4  # largest relative difference between the NumPy tower and its SavedModel that is accepted


class QueryLayer:
    """The Keras layer names of the query tower: training/model.py names its layers with these, and
    training/query_weights.py reads a trained tower's weights by them."""

    USER_LOOKUP = "user_lookup"
    USER_EMBEDDING = "user_embedding"
    TIMESTAMP_CLAMP = "timestamp_clamp"
    TIMESTAMP_BUCKETS = "timestamp_buckets"
    TIMESTAMP_EMBEDDING = "timestamp_embedding"
    TIMESTAMP_NORMALIZED = "timestamp_normalized"
    TIMESTAMP_COLUMN = "timestamp_column"
    HISTORY_LOOKUP = "history_lookup"
    HISTORY_EMBEDDING = "history_embedding"
    HISTORY_MEAN = "history_mean"
    HISTORY_POOL = "history_pool"
    HISTORY_ENCODER = "history_encoder"
    HISTORY_RECENT_EMBEDDING = "history_recent_embedding"
    HISTORY_RECENT = "history_recent"
    HISTORY_RECENT_FLAT = "history_recent_flat"
    HISTORY_RATING_LEVEL = "history_rating_level"
    HISTORY_RATING_SCALE = "history_rating_scale"
    ITEM_ITEM_RATING_SCALE = "item_item_rating_scale"
    ITEM_ITEM_EMBEDDING = "item_item_embedding"
    ITEM_ITEM_PRIOR = "item_item_prior"
    ITEM_ITEM_PRIOR_GAIN = "item_item_prior_gain"
    ITEM_ITEM_JOIN = "item_item_join"
    ITEM_ITEM_POOL = "item_item_pool"
    ITEM_ITEM_CONCAT = "query_item_item"
    FEATURES = "query_features"
    DENSE = "query_dense"
    NORMALIZE = "query_normalize"


@dataclass(frozen=True)
class QueryTowerSpec:
    """The query tower's structure, declared once.

    training/model.py builds the Keras tower from it, training/query_weights.py reads a trained tower's
    weights by the layer names it lists (a layer it does not list is an export error), and
    `QueryTowerArrays.spec` reads it back from the arrays, so an export whose mirror differs is refused.
    Without a history nothing history-shaped exists: pooling, recent and item-item are then canonical.
    """

    layers: tuple[int, ...]  # dense widths, ReLU on all but the last
    history_length: int = 0
    history_pooling: str = "mean"  # one of POOLINGS
    history_recent: int = 0  # newest positions also read one by one from their own table
    item_item_dim: int = 0  # learned columns of the item-item channel appended past the dense stack
    item_item_prior: int = 0  # fixed columns after them: the EASE prior (training/item_item_prior.py), with a gain
    history_ratings: bool = False  # the history's stars scale each position's pooling weight (input history_rating)
    normalize: bool = False  # L2-normalise the whole embedding
    attention_blocks: int = 1  # "attention" pooling: self-attention blocks over the history
    attention_heads: int = 1  # "attention" pooling: heads per block (they divide the embedding width)

    def __post_init__(self) -> None:
        if self.history_pooling not in POOLINGS:
            raise ValueError(f"history_pooling {self.history_pooling!r} is none of {POOLINGS}")
        if not self.history_length:
            object.__setattr__(self, "history_pooling", "mean")
            object.__setattr__(self, "history_recent", 0)
            object.__setattr__(self, "item_item_dim", 0)
            object.__setattr__(self, "item_item_prior", 0)
            object.__setattr__(self, "history_ratings", False)
        if self.history_pooling != "attention":
            object.__setattr__(self, "attention_blocks", 1)
            object.__setattr__(self, "attention_heads", 1)

    @property
    def dense_relu(self) -> tuple[bool, ...]:
        return tuple(i < len(self.layers) - 1 for i in range(len(self.layers)))

    @property
    def item_item_width(self) -> int:
        """Columns of the item-item channel: the learned ones and the prior's."""
        return self.item_item_dim + self.item_item_prior

    def _item_item_layer_names(self) -> set[str]:
        names = {QueryLayer.ITEM_ITEM_POOL, QueryLayer.ITEM_ITEM_CONCAT} if self.item_item_width else set()
        if self.item_item_dim:
            names.add(QueryLayer.ITEM_ITEM_EMBEDDING)
        if self.item_item_prior:
            names |= {QueryLayer.ITEM_ITEM_PRIOR, QueryLayer.ITEM_ITEM_PRIOR_GAIN}
        if self.item_item_dim and self.item_item_prior:
            names.add(QueryLayer.ITEM_ITEM_JOIN)
        return names

    def layer_names(self) -> frozenset[str]:
        """Every non-input layer a Keras tower of this structure has, by name."""
        names = {
            QueryLayer.USER_LOOKUP,
            QueryLayer.USER_EMBEDDING,
            QueryLayer.TIMESTAMP_CLAMP,
            QueryLayer.TIMESTAMP_BUCKETS,
            QueryLayer.TIMESTAMP_EMBEDDING,
            QueryLayer.TIMESTAMP_NORMALIZED,
            QueryLayer.TIMESTAMP_COLUMN,
            QueryLayer.FEATURES,
            QueryLayer.DENSE,
        }
        if self.history_length:
            pool = {
                "positional": QueryLayer.HISTORY_POOL,
                "attention": QueryLayer.HISTORY_ENCODER,
            }.get(self.history_pooling, QueryLayer.HISTORY_MEAN)
            names |= {QueryLayer.HISTORY_LOOKUP, QueryLayer.HISTORY_EMBEDDING, pool}
        if self.history_recent:
            names |= {QueryLayer.HISTORY_RECENT_EMBEDDING, QueryLayer.HISTORY_RECENT, QueryLayer.HISTORY_RECENT_FLAT}
        names |= self._item_item_layer_names()
        if self.history_ratings:
            names.add(QueryLayer.HISTORY_RATING_LEVEL)
            if self.history_pooling != "attention":  # the encoder reads the levels itself
                names.add(QueryLayer.HISTORY_RATING_SCALE)
            if self.item_item_width:
                names.add(QueryLayer.ITEM_ITEM_RATING_SCALE)
        if self.normalize:
            names.add(QueryLayer.NORMALIZE)
        return frozenset(names)


@dataclass(frozen=True)
class QueryTowerArrays:
    """Every weight and constant of one query tower; `from_arrays`/`to_arrays` are the file's layout."""

    user_vocabulary: np.ndarray  # str [U]: position = embedding row; the out-of-vocabulary token at `user_oov`
    user_oov: int
    user_embedding: np.ndarray  # float32 [U, e]
    timestamp_low: int
    timestamp_high: int
    timestamp_boundaries: np.ndarray  # float32 [B - 1], interior bucket edges
    timestamp_embedding: np.ndarray  # float32 [B, e]
    timestamp_mean: np.float32
    timestamp_variance: np.float32
    dense_kernels: tuple[np.ndarray, ...]  # float32 [in, out] each
    dense_biases: tuple[np.ndarray, ...]
    dense_relu: tuple[bool, ...]
    normalize: bool
    history_length: int = 0
    history_vocabulary: np.ndarray | None = None  # str [M]: "" (masked) and the out-of-vocabulary token included
    history_oov: int = 1
    history_embedding: np.ndarray | None = None  # float32 [M, e]
    history_pooling: str = "mean"
    history_position_logits: np.ndarray | None = None  # float32 [H], "positional" only
    history_recent: int = 0
    history_recent_embedding: np.ndarray | None = None  # float32 [M, e], rows as history_vocabulary
    item_item_embedding: np.ndarray | None = None  # float32 [M, D], rows as history_vocabulary
    item_item_prior: int = 0  # the last columns of item_item_embedding that are the fixed prior (times its gain)
    item_item_position_logits: np.ndarray | None = None  # float32 [H], with item_item_embedding
    history_rating_scale: np.ndarray | None = None  # float32 [RATING_LEVELS]: the history pooling's, per level
    item_item_rating_scale: np.ndarray | None = None  # float32 [RATING_LEVELS]: the item-item pooling's
    history_encoder: EncoderArrays | None = None  # "attention" pooling only

    @property
    def spec(self) -> QueryTowerSpec:
        """The structure these arrays compute (compare it with the one a tower was built from)."""
        encoder = self.history_encoder
        width = 0 if self.item_item_embedding is None else int(self.item_item_embedding.shape[1])
        return QueryTowerSpec(
            layers=tuple(int(kernel.shape[1]) for kernel in self.dense_kernels),
            history_length=self.history_length,
            history_pooling=self.history_pooling,
            history_recent=self.history_recent,
            item_item_dim=width - self.item_item_prior,
            item_item_prior=self.item_item_prior,
            history_ratings=self.history_rating_scale is not None or (encoder is not None and encoder.ratings),
            normalize=self.normalize,
            attention_blocks=1 if encoder is None else encoder.blocks,
            attention_heads=1 if encoder is None else encoder.heads,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The npz members: plain arrays only, so the file loads with allow_pickle=False."""
        arrays: dict[str, np.ndarray] = {
            "user_vocabulary": np.asarray(self.user_vocabulary, dtype=str),
            "user_oov": np.array(self.user_oov, dtype=np.int64),
            "user_embedding": self.user_embedding.astype(np.float32),
            "timestamp_range": np.array([self.timestamp_low, self.timestamp_high], dtype=np.int64),
            "timestamp_boundaries": self.timestamp_boundaries.astype(np.float32),
            "timestamp_embedding": self.timestamp_embedding.astype(np.float32),
            "timestamp_moments": np.array([self.timestamp_mean, self.timestamp_variance], dtype=np.float32),
            "dense_relu": np.array(self.dense_relu, dtype=bool),
            "normalize": np.array(self.normalize, dtype=bool),
            "history_length": np.array(self.history_length, dtype=np.int64),
        }
        for i, (kernel, bias) in enumerate(zip(self.dense_kernels, self.dense_biases, strict=True)):
            arrays[f"dense_kernel_{i}"] = kernel.astype(np.float32)
            arrays[f"dense_bias_{i}"] = bias.astype(np.float32)
        if self.history_length:
            assert self.history_vocabulary is not None and self.history_embedding is not None
            arrays["history_vocabulary"] = np.asarray(self.history_vocabulary, dtype=str)
            arrays["history_oov"] = np.array(self.history_oov, dtype=np.int64)
            arrays["history_embedding"] = self.history_embedding.astype(np.float32)
            arrays["history_pooling"] = np.asarray(self.history_pooling, dtype=str)
            if self.history_position_logits is not None:
                arrays["history_position_logits"] = self.history_position_logits.astype(np.float32)
            if self.history_recent:
                assert self.history_recent_embedding is not None
                arrays["history_recent"] = np.array(self.history_recent, dtype=np.int64)
                arrays["history_recent_embedding"] = self.history_recent_embedding.astype(np.float32)
            if self.item_item_embedding is not None:
                assert self.item_item_position_logits is not None
                arrays["item_item_embedding"] = self.item_item_embedding.astype(np.float32)
                arrays["item_item_position_logits"] = self.item_item_position_logits.astype(np.float32)
                if self.item_item_prior:
                    arrays["item_item_prior"] = np.array(self.item_item_prior, dtype=np.int64)
            for name in ("history_rating_scale", "item_item_rating_scale"):
                if getattr(self, name) is not None:
                    arrays[name] = getattr(self, name).astype(np.float32)
            if self.history_encoder is not None:
                arrays.update(self.history_encoder.to_arrays(_ENCODER))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> QueryTowerArrays:
        """Raises KeyError for a missing member; shapes are checked by `check`."""
        relu = tuple(bool(x) for x in arrays["dense_relu"])
        low, high = (int(x) for x in arrays["timestamp_range"])
        mean, variance = (np.float32(x) for x in arrays["timestamp_moments"])
        history_length = int(arrays["history_length"])
        history = {}
        if history_length:
            history = {
                "history_vocabulary": arrays["history_vocabulary"].astype(str),
                "history_oov": int(arrays["history_oov"]),
                "history_embedding": arrays["history_embedding"].astype(np.float32),
                "history_pooling": str(arrays["history_pooling"]),
                "history_position_logits": (
                    arrays["history_position_logits"].astype(np.float32)
                    if "history_position_logits" in arrays
                    else None
                ),
            }
            if "history_recent" in arrays:
                history["history_recent"] = int(arrays["history_recent"])
                history["history_recent_embedding"] = arrays["history_recent_embedding"].astype(np.float32)
            if "item_item_embedding" in arrays:
                history["item_item_embedding"] = arrays["item_item_embedding"].astype(np.float32)
                history["item_item_position_logits"] = arrays["item_item_position_logits"].astype(np.float32)
                if "item_item_prior" in arrays:
                    history["item_item_prior"] = int(arrays["item_item_prior"])
            for name in ("history_rating_scale", "item_item_rating_scale"):
                if name in arrays:
                    history[name] = arrays[name].astype(np.float32)
            if f"{_ENCODER}heads" in arrays:
                history["history_encoder"] = EncoderArrays.from_arrays(arrays, _ENCODER)
        return cls(
            user_vocabulary=arrays["user_vocabulary"].astype(str),
            user_oov=int(arrays["user_oov"]),
            user_embedding=arrays["user_embedding"].astype(np.float32),
            timestamp_low=low,
            timestamp_high=high,
            timestamp_boundaries=arrays["timestamp_boundaries"].astype(np.float32),
            timestamp_embedding=arrays["timestamp_embedding"].astype(np.float32),
            timestamp_mean=mean,
            timestamp_variance=variance,
            dense_kernels=tuple(arrays[f"dense_kernel_{i}"].astype(np.float32) for i in range(len(relu))),
            dense_biases=tuple(arrays[f"dense_bias_{i}"].astype(np.float32) for i in range(len(relu))),
            dense_relu=relu,
            normalize=bool(arrays["normalize"]),
            history_length=history_length,
            **history,  # type: ignore[arg-type]
        )

    def _check_history(self) -> int:
        """Raises ValueError for a history part that does not fit; returns its width."""
        if self.history_vocabulary is None or self.history_embedding is None:
            raise ValueError("history_length > 0 without a history vocabulary and embedding")
        if len(self.history_vocabulary) != len(self.history_embedding) or "" not in self.history_vocabulary:
            raise ValueError("history_vocabulary (with its '' mask) and history_embedding disagree")
        if self.history_pooling not in POOLINGS:
            raise ValueError(f"history_pooling {self.history_pooling!r} is none of {POOLINGS}")
        if self.history_pooling == "positional" and (
            self.history_position_logits is None or self.history_position_logits.shape != (self.history_length,)
        ):
            raise ValueError("positional pooling needs history_position_logits [history_length]")
        width = int(self.history_embedding.shape[1])
        self._check_encoder(width)
        if self.history_recent:
            recent = self.history_recent_embedding
            if not 0 < self.history_recent <= self.history_length or recent is None or recent.ndim != 2:
                raise ValueError("history_recent needs 1..history_length newest movies and their table")
            if len(recent) != len(self.history_vocabulary):
                raise ValueError("history_recent_embedding and history_vocabulary disagree")
            width += self.history_recent * int(recent.shape[1])
        if self.item_item_embedding is not None and (
            self.item_item_embedding.ndim != 2
            or len(self.item_item_embedding) != len(self.history_vocabulary)
            or self.item_item_position_logits is None
            or self.item_item_position_logits.shape != (self.history_length,)
        ):
            raise ValueError("item_item_embedding needs a row per history_vocabulary and [history_length] logits")
        columns = 0 if self.item_item_embedding is None else self.item_item_embedding.shape[1]
        if not 0 <= self.item_item_prior <= columns:
            raise ValueError(f"item_item_prior {self.item_item_prior} is not within the item-item channel's columns")
        self._check_rating_scales()
        return width

    def _check_encoder(self, width: int) -> None:
        encoder = self.history_encoder
        if (encoder is not None) != (self.history_pooling == "attention"):
            raise ValueError("a history encoder goes with attention pooling, and only with it")
        if encoder is not None:
            encoder.check()
            if (encoder.length, encoder.dim) != (self.history_length, width):
                raise ValueError(f"history encoder [{encoder.length}, {encoder.dim}] does not read [H, {width}]")

    def _check_rating_scales(self) -> None:
        levels = (RATING_LEVELS,)
        if self.history_rating_scale is not None and (
            self.history_rating_scale.shape != levels or self.history_encoder is not None
        ):
            raise ValueError(f"history_rating_scale must be [{RATING_LEVELS}], and not with an encoder")
        if (self.item_item_rating_scale is not None) != (
            self.spec.history_ratings and self.item_item_embedding is not None
        ) or (self.item_item_rating_scale is not None and self.item_item_rating_scale.shape != levels):
            raise ValueError(f"item_item_rating_scale [{RATING_LEVELS}] goes with history_rating_scale and item-item")

    def check(self) -> None:
        """Raises ValueError when the shapes do not chain into one tower."""
        width = self.user_embedding.shape[1] + self.timestamp_embedding.shape[1] + 1
        if len(self.user_vocabulary) != len(self.user_embedding) or not 0 <= self.user_oov < len(self.user_vocabulary):
            raise ValueError("user_vocabulary and user_embedding disagree")
        if len(self.timestamp_boundaries) + 1 != len(self.timestamp_embedding):
            raise ValueError("timestamp_boundaries and timestamp_embedding disagree")
        if self.history_length:
            width += self._check_history()
        elif self.item_item_embedding is not None:
            raise ValueError("item_item_embedding without a history")
        for kernel, bias in zip(self.dense_kernels, self.dense_biases, strict=True):
            if kernel.ndim != 2 or kernel.shape[0] != width or bias.shape != (kernel.shape[1],):
                raise ValueError(f"dense kernel {kernel.shape} does not take {width} inputs")
            width = kernel.shape[1]
        if not self.dense_kernels:
            raise ValueError("no dense layers")
        optional = (
            self.history_embedding,
            self.history_recent_embedding,
            self.item_item_embedding,
            self.item_item_position_logits,
        )
        values = [self.user_embedding, self.timestamp_embedding, *self.dense_kernels, *self.dense_biases]
        values += [value for value in optional if value is not None]
        if not all(np.isfinite(v).all() for v in values):
            raise ValueError("weights hold non-finite values")


class QueryTower:
    """The forward pass over `QueryTowerArrays`; holds the token -> row dictionaries built once at load."""

    def __init__(self, arrays: QueryTowerArrays) -> None:
        arrays.check()
        self.arrays = arrays
        self.history_length = arrays.history_length
        self._user_rows = {token: row for row, token in enumerate(arrays.user_vocabulary.tolist())}
        self._history_rows: dict[str, int] = {}
        self._mask_row = -1
        if arrays.history_vocabulary is not None:
            self._history_rows = {token: row for row, token in enumerate(arrays.history_vocabulary.tolist())}
            self._mask_row = self._history_rows[""]
        self._std = np.maximum(np.sqrt(arrays.timestamp_variance), _EPSILON)
        self._reads_ratings = arrays.spec.history_ratings
        # The first dense layer distributes over the concatenation, and the history pooling is a weighted sum,
        # so each embedding table is multiplied by its slice of the first kernel once, here: a query then
        # gathers and adds rows of width `out` instead of concatenating features and multiplying.
        kernel = arrays.dense_kernels[0]
        user_width, time_width = arrays.user_embedding.shape[1], arrays.timestamp_embedding.shape[1]
        cuts = np.cumsum([user_width, time_width, 1])
        self._user_part = arrays.user_embedding @ kernel[: cuts[0]]
        self._time_part = arrays.timestamp_embedding @ kernel[cuts[0] : cuts[1]] + arrays.dense_biases[0]
        self._column_part = kernel[cuts[1]]
        self._history_part: np.ndarray | None = None
        self._history_kernel: np.ndarray | None = None  # "attention": the encoder output's first-kernel slice
        self._position_weights = np.ones(arrays.history_length, dtype=np.float32)
        if arrays.history_pooling == "positional" and arrays.history_position_logits is not None:
            self._position_weights = _softmax_numerators(arrays.history_position_logits)
        self._item_item: tuple[np.ndarray, np.ndarray] | None = None  # (position weights, table), checked above
        if arrays.item_item_embedding is not None and arrays.item_item_position_logits is not None:
            self._item_item = (_softmax_numerators(arrays.item_item_position_logits), arrays.item_item_embedding)
        self._recent_parts: list[np.ndarray] = []  # one [M, out] table per newest position
        if arrays.history_embedding is not None:
            start = cuts[2] + arrays.history_embedding.shape[1]
            self._history_kernel = kernel[cuts[2] : start]
            self._history_part = arrays.history_embedding @ self._history_kernel
            if arrays.history_recent_embedding is not None:
                recent, width = arrays.history_recent_embedding, arrays.history_recent_embedding.shape[1]
                starts = range(start, start + arrays.history_recent * width, width)
                self._recent_parts = [recent @ kernel[at : at + width] for at in starts]

    @property
    def dim(self) -> int:
        extra = 0 if self.arrays.item_item_embedding is None else int(self.arrays.item_item_embedding.shape[1])
        return int(self.arrays.dense_kernels[-1].shape[1]) + extra

    def __call__(
        self,
        user_ids: Sequence[str],
        timestamps: Sequence[int],
        histories: Sequence[Sequence[str]],
        history_ratings: Sequence[Sequence[float]] | None = None,
    ) -> np.ndarray:
        """float32 [batch, d] for the same inputs the SavedModel signature takes (histories newest first, and
        each history movie's stars, NO_VALUE where unknown; ignored by a tower that reads no ratings)."""
        a = self.arrays
        users = [self._user_rows.get(u, a.user_oov) for u in user_ids]
        clamped = np.minimum(np.maximum(np.asarray(timestamps, dtype=np.int64), a.timestamp_low), a.timestamp_high)
        as_float = clamped.astype(np.float32)
        buckets = np.searchsorted(a.timestamp_boundaries, as_float, side="right")
        standardised = (as_float - a.timestamp_mean) / self._std
        x = self._user_part[users] + self._time_part[buckets] + standardised[:, None] * self._column_part
        index = present = levels = None
        if self._history_part is not None:
            index = self._history_rows_of(histories)
            present = index != self._mask_row
            levels = self._levels_of(history_ratings, len(histories))
            if a.history_encoder is not None and self._history_kernel is not None:
                assert a.history_embedding is not None  # check(): an encoder reads the history's table
                x += a.history_encoder(a.history_embedding[index], present, levels) @ self._history_kernel
            else:
                scale = _scale(a.history_rating_scale, levels)
                x += _pool(present, self._position_weights, self._history_part, index, scale)
            for position, part in enumerate(self._recent_parts):
                x += part[index[:, position]]
        if a.dense_relu[0]:
            np.maximum(x, 0, out=x)
        for kernel, bias, relu in zip(a.dense_kernels[1:], a.dense_biases[1:], a.dense_relu[1:], strict=True):
            x = x @ kernel + bias
            if relu:
                np.maximum(x, 0, out=x)
        if self._item_item is not None and index is not None and present is not None:  # check(): a history
            weights, table = self._item_item
            scale = _scale(a.item_item_rating_scale, levels)
            x = np.concatenate([x, _pool(present, weights, table, index, scale)], axis=1)
        if a.normalize:
            x = x / np.sqrt(np.maximum(np.sum(x * x, axis=1, keepdims=True), _NORM_EPSILON))
        return x.astype(np.float32, copy=False)

    def _levels_of(self, ratings: Sequence[Sequence[float]] | None, batch: int) -> np.ndarray | None:
        """int64 [batch, history_length]: each history movie's rating level (0 where unknown or padded)."""
        if not self._reads_ratings:
            return None
        levels = np.zeros((batch, self.history_length), dtype=np.int64)
        for i, values in enumerate(ratings or ()):
            cut = values[: self.history_length]
            levels[i, : len(cut)] = np.clip(np.rint(np.asarray(cut, dtype=np.float32)), 0, RATING_LEVELS - 1)
        return levels

    def _history_rows_of(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """int64 [batch, history_length]: each history's lookup rows, newest first, the "" row padding."""
        length, rows, oov = self.history_length, self._history_rows, self.arrays.history_oov
        index = np.full((len(histories), length), self._mask_row, dtype=np.int64)
        for i, history in enumerate(histories):
            cut = history[:length]
            index[i, : len(cut)] = [rows.get(movie, oov) for movie in cut]
        return index


def _softmax_numerators(logits: np.ndarray) -> np.ndarray:
    """exp(logit - the largest logit), as training/model.py's PositionalPool computes its weights."""
    return np.exp(logits - logits.max()).astype(np.float32)


def _scale(table: np.ndarray | None, levels: np.ndarray | None) -> np.ndarray | None:
    return None if table is None or levels is None else table[levels]


def _pool(
    present: np.ndarray,
    position_weights: np.ndarray,
    table: np.ndarray,
    index: np.ndarray,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted sum of `table` rows at `index` [batch, H]: each present position weighs its
    `position_weights` entry (ones for the mean), normalised over the row's present positions, then times
    its rating level's `scale` [batch, H] when given; a row with none pools to zeros. With the history's
    first-kernel slice as `table`, it is the pooled history already through that kernel."""
    weights = present * position_weights
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), np.float32(1e-30))
    if scale is not None:
        weights = weights * scale
    return np.matmul(weights[:, None, :].astype(np.float32, copy=False), table[index])[:, 0, :]


def probe_queries(
    arrays: QueryTowerArrays, known_movies: Sequence[str], now: int, count: int = 64, seed: int = 0
) -> tuple[list[str], list[int], list[list[str]], list[list[float]]]:
    """Queries that reach every branch: known, unknown and blank users; timestamps before, at and after the
    clamp range, on and beside bucket edges, and now; histories empty, short, full, with unknown movies, and
    their ratings: every level, unknown (0), half stars and out-of-range values included."""
    rng = np.random.default_rng(seed)
    vocabulary = [u for u in arrays.user_vocabulary.tolist() if u and u != arrays.user_vocabulary[arrays.user_oov]]
    sampled = rng.choice(vocabulary, size=count - 2, replace=len(vocabulary) < count - 2).tolist() if vocabulary else []
    users = [*sampled, "", "no-such-user"]
    low, high = arrays.timestamp_low, arrays.timestamp_high
    special = [now, low - 1, low, high, high + 1]
    edges = arrays.timestamp_boundaries.astype(np.int64)
    if len(edges):
        special += [int(edges[0]), int(edges[len(edges) // 2]) - 1, int(edges[-1]) + 1]
    timestamps = [special[i] if i < len(special) else int(rng.integers(low, high + 1)) for i in range(len(users))]
    movies = list(known_movies)
    histories: list[list[str]] = []
    for i in range(len(users)):
        size = [0, 1, 3, arrays.history_length, arrays.history_length + 5][i % 5] if movies else 0
        history = rng.choice(movies, size=min(size, len(movies)), replace=False).tolist() if size else []
        if i % 7 == 3:
            history.insert(0, "no-such-movie")
        histories.append(history)
    choices = np.array([0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 4.5, 7.0, -1.0], dtype=np.float32)
    ratings = [rng.choice(choices, size=len(h)).tolist() for h in histories]
    return users, timestamps, histories, ratings


def tower_inputs(
    history_length: int,
    history_ratings: bool,
    user_ids: Sequence[str],
    timestamps: Sequence[int],
    histories: Sequence[Sequence[str]],
    ratings: Sequence[Sequence[float]] | None = None,
) -> dict[str, np.ndarray]:
    """The query SavedModel's inputs as arrays, by signature name: user_id str [b], timestamp int64 [b], and
    with a history, history str [b, H] ("" pads) and history_rating float32 [b, H] (NO_VALUE pads). One
    definition for what training's export check, the server and its load-time check feed the tower."""
    inputs = {"user_id": np.array(user_ids, dtype=str), "timestamp": np.array(timestamps, dtype=np.int64)}
    shape = (len(user_ids), history_length)
    if history_length:
        inputs["history"] = np.array(padded_histories(histories, history_length), dtype=str).reshape(shape)
    if history_ratings:
        values = padded_ratings(ratings or [[] for _ in user_ids], history_length)
        inputs["history_rating"] = np.array(values, dtype=np.float32).reshape(shape)
    return inputs


def padded_histories(histories: Sequence[Sequence[str]], length: int) -> list[list[str]]:
    """Each history cut to `length` movie ids (newest first) and padded with "", as the SavedModel takes them."""
    return [[*h[:length], *[""] * (length - len(h[:length]))] for h in histories]


def padded_ratings(ratings: Sequence[Sequence[float]], length: int) -> list[list[float]]:
    """Each history's stars cut to `length` and padded with NO_VALUE, as the SavedModel takes them."""
    return [[*map(float, r[:length]), *[NO_VALUE] * (length - len(r[:length]))] for r in ratings]


def max_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest absolute difference, relative to the largest expected magnitude (at least 1)."""
    if expected.shape != actual.shape:
        return float("inf")
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return float(np.max(np.abs(expected - actual)) / scale) if expected.size else 0.0


def write_query_weights(version_dir: Path, arrays: QueryTowerArrays) -> None:
    arrays.check()
    np.savez(version_dir / QUERY_WEIGHTS, **arrays.to_arrays())  # type: ignore[arg-type]


def read_query_weights(version_dir: Path) -> QueryTower | None:
    """The NumPy query tower of a version, or None for a version exported without query_weights.npz.

    Raises:
        VersionError: the file is there but unreadable or its arrays do not form one tower.
    """
    path = version_dir / QUERY_WEIGHTS
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as members:
            arrays = QueryTowerArrays.from_arrays({name: members[name] for name in members.files})
        return QueryTower(arrays)
    except (OSError, ValueError, KeyError) as error:
        raise VersionError(f"{QUERY_WEIGHTS} cannot be read as a query tower ({error})") from None
