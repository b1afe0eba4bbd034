"""The self-attention history encoder's weights, declared once, and its forward pass in NumPy.

Why an encoder: a pooled history (a weighted mean of the rated movies' vectors) cannot see which earlier movie
explains which later one, nor weigh a movie by what else the user rated; a self-attention block over the
history can (SASRec, Kang & McAuley 2018). Each history position reads its movie's vector, a learned vector
for its position (newest first) and, when the tower reads stars, a learned vector for its rating level, so a
1-star and a 5-star rating of the same movie are different inputs. Blocks of single- or multi-head attention
(padded positions masked out), each followed by a ReLU feed-forward, both with a residual connection and layer
normalisation (post-norm, as the Transformer); the output is the newest position's vector, zeros for an empty
history. The query is only ever asked at one moment, so no causal mask is needed: the newest position may
attend to every earlier one, and the others are only there to inform it.

`encoder_weight_shapes` is the one list of the encoder's weights: training/history_encoder.py creates its Keras
variables from it by name, and `EncoderArrays` reads them back from query_weights.npz by the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RATING_LEVELS = 6  # round(stars) clipped to 0..5; 0 is a padded slot or a movie whose rating is unknown
LAYER_NORM_EPSILON = 1e-6
MASKED_SCORE = -1e9  # an attention score that softmax turns into exactly 0 in float32
BLOCK_WEIGHTS = ("query", "key", "value", "output", "norm1", "feed1", "feed2", "norm2")


def encoder_weight_shapes(
    length: int, dim: int, blocks: int, feed_forward: int, ratings: bool
) -> dict[str, tuple[int, ...]]:
    """Every weight of an encoder by name, in creation order: "position" [H, e], "rating" [levels, e] with
    ratings, and per block b "block{b}_{part}_kernel|bias" (projections e x e, feed-forward e x f and f x e) and
    "block{b}_norm{1,2}_gamma|beta"."""
    shapes: dict[str, tuple[int, ...]] = {"position": (length, dim)}
    if ratings:
        shapes["rating"] = (RATING_LEVELS, dim)
    for b in range(blocks):
        for part in ("query", "key", "value", "output"):
            shapes[f"block{b}_{part}_kernel"] = (dim, dim)
            shapes[f"block{b}_{part}_bias"] = (dim,)
        shapes[f"block{b}_norm1_gamma"] = shapes[f"block{b}_norm1_beta"] = (dim,)
        shapes[f"block{b}_feed1_kernel"], shapes[f"block{b}_feed1_bias"] = (dim, feed_forward), (feed_forward,)
        shapes[f"block{b}_feed2_kernel"], shapes[f"block{b}_feed2_bias"] = (feed_forward, dim), (dim,)
        shapes[f"block{b}_norm2_gamma"] = shapes[f"block{b}_norm2_beta"] = (dim,)
    return shapes


@dataclass(frozen=True)
class EncoderArrays:
    """One trained encoder: its weights by `encoder_weight_shapes` name, and its number of heads."""

    weights: Mapping[str, np.ndarray]
    heads: int

    @property
    def length(self) -> int:
        return int(self.weights["position"].shape[0])

    @property
    def dim(self) -> int:
        return int(self.weights["position"].shape[1])

    @property
    def blocks(self) -> int:
        return sum(1 for name in self.weights if name.endswith("_query_kernel"))

    @property
    def ratings(self) -> bool:
        return "rating" in self.weights

    @property
    def feed_forward(self) -> int:
        return int(self.weights["block0_feed1_bias"].shape[0]) if self.blocks else self.dim

    def check(self) -> None:
        """Raises ValueError unless the weights are exactly the declared ones, finite, and the heads divide e."""
        expected = encoder_weight_shapes(self.length, self.dim, self.blocks, self.feed_forward, self.ratings)
        shapes = {name: tuple(value.shape) for name, value in self.weights.items()}
        if shapes != expected:
            raise ValueError(f"history encoder weights {sorted(shapes)} are not the declared {sorted(expected)}")
        if self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"{self.heads} attention heads do not divide the width {self.dim}")
        if not all(np.isfinite(value).all() for value in self.weights.values()):
            raise ValueError("history encoder weights hold non-finite values")

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {f"{prefix}{name}": value.astype(np.float32) for name, value in self.weights.items()}
        arrays[f"{prefix}heads"] = np.array(self.heads, dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> EncoderArrays:
        weights = {
            name[len(prefix) :]: arrays[name].astype(np.float32)
            for name in arrays
            if name.startswith(prefix) and name != f"{prefix}heads"
        }
        return cls(weights=weights, heads=int(arrays[f"{prefix}heads"]))

    def __call__(self, vectors: np.ndarray, present: np.ndarray, levels: np.ndarray | None) -> np.ndarray:
        """float32 [batch, e]: the newest position's output, for movie vectors [batch, H, e], present [batch, H]
        (bool) and rating levels [batch, H] (int, with ratings)."""
        w, mask = self.weights, present.astype(np.float32)[..., None]
        x = vectors + w["position"][None]
        if self.ratings and levels is not None:
            x = x + w["rating"][levels]
        x = (x * mask).astype(np.float32)
        batch, _, dim = x.shape
        heads, width = self.heads, dim // self.heads
        blocked = np.where(present, np.float32(0), np.float32(MASKED_SCORE))[:, None, None, :]
        for b in range(self.blocks):
            # Only the newest position is read: the last block computes its query and what follows for it alone.
            rows = slice(0, 1) if b == self.blocks - 1 else slice(None)

            def project(part: str, inputs: np.ndarray, b: int = b) -> np.ndarray:
                return inputs @ w[f"block{b}_{part}_kernel"] + w[f"block{b}_{part}_bias"]

            def split(values: np.ndarray) -> np.ndarray:  # [batch, n, e] -> [batch, heads, n, e / heads]
                return values.reshape(batch, values.shape[1], heads, width).transpose(0, 2, 1, 3)

            query = split(project("query", x[:, rows]))
            key, value = split(project("key", x)), split(project("value", x))
            scores = query @ key.transpose(0, 1, 3, 2) / np.float32(np.sqrt(width)) + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attention = scores / scores.sum(axis=-1, keepdims=True)
            attended = (attention @ value).transpose(0, 2, 1, 3).reshape(batch, query.shape[2], dim)
            x = x[:, rows]
            x = _layer_norm(x + project("output", attended), w[f"block{b}_norm1_gamma"], w[f"block{b}_norm1_beta"])
            hidden = np.maximum(project("feed1", x), 0)
            x = _layer_norm(x + project("feed2", hidden), w[f"block{b}_norm2_gamma"], w[f"block{b}_norm2_beta"])
            x = (x * mask[:, rows]).astype(np.float32)
        return x[:, 0, :].astype(np.float32, copy=False)


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(variance + np.float32(LAYER_NORM_EPSILON)) * gamma + beta).astype(np.float32)
