"""Reads a trained Keras query tower's weights into the contract's QueryTowerArrays (query_weights.npz).

By layer name, as training/model.py builds the tower. A tower with a layer this module does not know gets
no arrays (None): the version is then served through its SavedModel, never through a wrong mirror.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from contract.query_tower import QueryTowerArrays

log = logging.getLogger(__name__)

# Layers whose computation contract/query_tower.py mirrors (Input layers aside).
_KNOWN = {
    "user_lookup",
    "user_embedding",
    "timestamp_clamp",
    "timestamp_buckets",
    "timestamp_embedding",
    "timestamp_normalized",
    "timestamp_column",
    "history_lookup",
    "history_embedding",
    "history_mean",
    "history_pool",
    "history_recent_embedding",
    "history_recent",
    "history_recent_flat",
    "item_item_embedding",
    "item_item_pool",
    "query_item_item",
    "query_features",
    "query_dense",
    "query_normalize",
}


def query_tower_arrays(tower: tf.keras.Model) -> QueryTowerArrays | None:
    """The tower's weights and constants, or None when it holds a layer the NumPy mirror does not know."""
    layers = {layer.name: layer for layer in tower.layers if not isinstance(layer, tf.keras.layers.InputLayer)}
    unknown = sorted(set(layers) - _KNOWN)
    if unknown:
        log.warning("query tower has layers %s that contract/query_tower.py does not mirror; no %s", unknown, "arrays")
        return None
    dense = [layer for layer in layers["query_dense"].layers]
    relu = []
    for layer in dense:
        activation = tf.keras.activations.serialize(layer.activation)
        if activation not in ("relu", "linear"):
            log.warning("query tower dense activation %r is not mirrored; no arrays", activation)
            return None
        relu.append(activation == "relu")
    user_vocabulary = np.asarray(layers["user_lookup"].get_vocabulary(), dtype=str)
    clamp = layers["timestamp_clamp"]
    normalization = layers["timestamp_normalized"]
    history: dict[str, object] = {}
    if "history_lookup" in layers:
        lookup = layers["history_lookup"]
        vocabulary = np.asarray(lookup.get_vocabulary(), dtype=str)
        pool = layers.get("history_pool")
        history = {
            "history_length": int(tower.get_layer("history_lookup").input_shape[1]),
            "history_vocabulary": vocabulary,
            "history_oov": int(np.flatnonzero(vocabulary == lookup.oov_token)[0]),
            "history_embedding": layers["history_embedding"].get_weights()[0],
            "history_pooling": "positional" if pool is not None else "mean",
            "history_position_logits": _variable(pool, "position_logits") if pool is not None else None,
        }
        if "history_recent" in layers:
            recent = layers["history_recent"]
            history["history_recent"] = history["history_length"] - int(recent.cropping[1])  # type: ignore[operator]
            history["history_recent_embedding"] = layers["history_recent_embedding"].get_weights()[0]
        if "item_item_embedding" in layers:
            history["item_item_embedding"] = layers["item_item_embedding"].get_weights()[0]
            history["item_item_position_logits"] = _variable(layers["item_item_pool"], "position_logits")
    return QueryTowerArrays(
        user_vocabulary=user_vocabulary,
        user_oov=int(np.flatnonzero(user_vocabulary == layers["user_lookup"].oov_token)[0]),
        user_embedding=layers["user_embedding"].get_weights()[0],
        timestamp_low=int(clamp.low),
        timestamp_high=int(clamp.high),
        timestamp_boundaries=np.asarray(layers["timestamp_buckets"].bin_boundaries, dtype=np.float32),
        timestamp_embedding=layers["timestamp_embedding"].get_weights()[0],
        timestamp_mean=np.float32(np.asarray(normalization.mean).reshape(())),
        timestamp_variance=np.float32(np.asarray(normalization.variance).reshape(())),
        dense_kernels=tuple(layer.kernel.numpy() for layer in dense),
        dense_biases=tuple(layer.bias.numpy() for layer in dense),
        dense_relu=tuple(relu),
        normalize="query_normalize" in layers,
        **history,  # type: ignore[arg-type]
    )


def _variable(layer: tf.keras.layers.Layer, name: str) -> np.ndarray:
    for variable in layer.weights:
        if variable.name.split("/")[-1].split(":")[0] == name:
            return np.asarray(variable.numpy(), dtype=np.float32)
    raise ValueError(f"layer {layer.name!r} has no variable {name!r}")
