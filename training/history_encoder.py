"""The self-attention history encoder as a Keras layer (its NumPy mirror: contract/history_encoder.py)."""

from __future__ import annotations

import tensorflow as tf

from contract.history_encoder import LAYER_NORM_EPSILON, MASKED_SCORE, encoder_weight_shapes

keras = tf.keras  # tf-keras (Keras 2), because training/__init__ sets TF_USE_LEGACY_KERAS=1


class HistoryEncoder(tf.keras.layers.Layer):
    """Self-attention blocks over the (masked) history vectors [batch, H, e], read at the newest position.

    Its inputs are the vectors alone or [vectors, rating levels [batch, H]]; its variables are exactly
    `encoder_weight_shapes`, by name, which the export reads into query_weights.npz.
    """

    supports_masking = True

    def __init__(self, length: int, heads: int, blocks: int, dropout: float, ratings: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.length, self.heads, self.blocks = int(length), int(heads), int(blocks)
        self.dropout, self.ratings = float(dropout), bool(ratings)
        self.w: dict[str, tf.Variable] = {}

    def build(self, input_shape: object) -> None:
        vectors_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and self.ratings else input_shape
        dim = int(tf.TensorShape(vectors_shape)[-1])  # type: ignore[arg-type]
        for name, shape in encoder_weight_shapes(self.length, dim, self.blocks, dim, self.ratings).items():
            if name.endswith("gamma"):
                initializer: object = "ones"
            elif name.endswith(("beta", "bias")):
                initializer = "zeros"
            elif name in ("position", "rating"):
                initializer = keras.initializers.TruncatedNormal(stddev=0.02)
            else:
                initializer = "glorot_uniform"
            self.w[name] = self.add_weight(name=name, shape=shape, initializer=initializer, trainable=True)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor | list[tf.Tensor], mask: object = None, training: object = None) -> tf.Tensor:
        vectors, levels = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        mask = mask[0] if isinstance(mask, (list, tuple)) else mask
        present = tf.ones(tf.shape(vectors)[:2]) if mask is None else tf.cast(mask, vectors.dtype)
        w = self.w
        x = vectors + w["position"][None]
        if levels is not None:
            x = x + tf.gather(w["rating"], levels)
        x = x * present[..., None]
        batch, length, dim = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        width = dim // self.heads
        blocked = ((1.0 - present) * MASKED_SCORE)[:, None, None, :]

        def split(values: tf.Tensor) -> tf.Tensor:  # [batch, H, e] -> [batch, heads, H, e / heads]
            return tf.transpose(tf.reshape(values, [batch, length, self.heads, width]), [0, 2, 1, 3])

        for b in range(self.blocks):

            def project(part: str, values: tf.Tensor, b: int = b) -> tf.Tensor:
                return tf.tensordot(values, w[f"block{b}_{part}_kernel"], axes=1) + w[f"block{b}_{part}_bias"]

            query, key, value = (split(project(part, x)) for part in ("query", "key", "value"))
            scores = tf.matmul(query, key, transpose_b=True) / tf.sqrt(float(width)) + blocked
            attended = tf.matmul(tf.nn.softmax(scores, axis=-1), value)
            attended = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch, length, dim])
            attended = self._dropped(project("output", attended), training)
            x = _layer_norm(x + attended, *self._norm(b, 1))
            hidden = tf.nn.relu(project("feed1", x))
            x = _layer_norm(x + self._dropped(project("feed2", hidden), training), *self._norm(b, 2))
            x = x * present[..., None]
        return x[:, 0, :]

    def _norm(self, block: int, which: int) -> tuple[tf.Variable, tf.Variable]:
        return self.w[f"block{block}_norm{which}_gamma"], self.w[f"block{block}_norm{which}_beta"]

    def _dropped(self, values: tf.Tensor, training: object) -> tf.Tensor:
        if training and self.dropout > 0:
            return tf.nn.dropout(values, rate=self.dropout)
        return values

    def compute_mask(self, inputs: object, mask: object = None) -> None:
        return None

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "length": self.length,
            "heads": self.heads,
            "blocks": self.blocks,
            "dropout": self.dropout,
            "ratings": self.ratings,
        }


def _layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) / tf.sqrt(variance + LAYER_NORM_EPSILON) * gamma + beta
