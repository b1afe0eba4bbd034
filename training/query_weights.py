"""Reads a trained Keras query tower's weights into the contract's QueryTowerArrays (query_weights.npz).

By the layer names of the tower's `QueryTowerSpec` (contract/query_tower.py), the one declaration of its
structure. A tower that holds a layer the spec does not list, or whose arrays compute another structure,
cannot be mirrored, and exporting it is an error: a version is never served through a wrong mirror, nor
silently through its (much slower) SavedModel.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from contract.history_encoder import EncoderArrays
from contract.query_tower import (
    MIRROR_TOLERANCE,
    QueryTower,
    QueryTowerArrays,
    QueryTowerSpec,
    max_difference,
    probe_queries,
    tower_inputs,
)
from contract.query_tower import QueryLayer as L


class UnmirroredTowerError(ValueError):
    """The Keras query tower has a part contract/query_tower.py does not compute."""


def mirrored_arrays(tower: tf.keras.Model, spec: QueryTowerSpec, movie_ids: Sequence[str]) -> QueryTowerArrays:
    """`query_tower_arrays`, proved to answer as the Keras tower does on `probe_queries` (as the server will).

    Raises:
        UnmirroredTowerError: as `query_tower_arrays`, or the NumPy forward pass disagrees with the tower.
    """
    arrays = query_tower_arrays(tower, spec)
    users, timestamps, histories, ratings = probe_queries(arrays, list(movie_ids[:50]), int(time.time()))
    arrays_in = tower_inputs(spec.history_length, spec.history_ratings, users, timestamps, histories, ratings)
    inputs = {name: tf.constant(value) for name, value in arrays_in.items()}
    mirrored = QueryTower(arrays)(users, timestamps, histories, ratings)
    difference = max_difference(tower(inputs, training=False).numpy(), mirrored)
    if not difference <= MIRROR_TOLERANCE:
        raise UnmirroredTowerError(
            f"contract/query_tower.py's forward pass differs from the Keras query tower by {difference:.2e} "
            f"(relative; at most {MIRROR_TOLERANCE:.0e}) on probe queries: fix the mirror before exporting"
        )
    return arrays


def query_tower_arrays(tower: tf.keras.Model, spec: QueryTowerSpec) -> QueryTowerArrays:
    """The weights and constants of `tower`, built from `spec`.

    Raises:
        UnmirroredTowerError: the tower's layers are not the spec's, a dense activation is not ReLU-but-last,
            or the arrays read back describe another structure; add the layer to `QueryTowerSpec` and the
            NumPy forward pass in contract/query_tower.py first.
    """
    layers = {layer.name: layer for layer in tower.layers if not isinstance(layer, tf.keras.layers.InputLayer)}
    if set(layers) != spec.layer_names():
        raise UnmirroredTowerError(
            f"query tower layers {sorted(set(layers) - spec.layer_names())} are not in its QueryTowerSpec, and "
            f"{sorted(spec.layer_names() - set(layers))} are missing: contract/query_tower.py cannot mirror it"
        )
    dense = list(layers[L.DENSE].layers)
    relu = tuple(tf.keras.activations.serialize(layer.activation) == "relu" for layer in dense)
    activations = {tf.keras.activations.serialize(layer.activation) for layer in dense}
    if not activations <= {"relu", "linear"} or relu != spec.dense_relu:
        raise UnmirroredTowerError(f"query tower dense activations {sorted(activations)} are not ReLU-but-last")
    user_lookup, clamp, normalization = layers[L.USER_LOOKUP], layers[L.TIMESTAMP_CLAMP], layers[L.TIMESTAMP_NORMALIZED]
    user_vocabulary = np.asarray(user_lookup.get_vocabulary(), dtype=str)
    arrays = QueryTowerArrays(
        user_vocabulary=user_vocabulary,
        user_oov=int(np.flatnonzero(user_vocabulary == user_lookup.oov_token)[0]),
        user_embedding=layers[L.USER_EMBEDDING].get_weights()[0],
        timestamp_low=int(clamp.low),
        timestamp_high=int(clamp.high),
        timestamp_boundaries=np.asarray(layers[L.TIMESTAMP_BUCKETS].bin_boundaries, dtype=np.float32),
        timestamp_embedding=layers[L.TIMESTAMP_EMBEDDING].get_weights()[0],
        timestamp_mean=np.float32(np.asarray(normalization.mean).reshape(())),
        timestamp_variance=np.float32(np.asarray(normalization.variance).reshape(())),
        dense_kernels=tuple(layer.kernel.numpy() for layer in dense),
        dense_biases=tuple(layer.bias.numpy() for layer in dense),
        dense_relu=relu,
        normalize=spec.normalize,
        **(_history_arrays(layers, spec) if spec.history_length else {}),  # type: ignore[arg-type]
    )
    if arrays.spec != spec:
        raise UnmirroredTowerError(f"the query tower's arrays describe {arrays.spec}, it was built as {spec}")
    return arrays


def _history_arrays(layers: dict[str, tf.keras.layers.Layer], spec: QueryTowerSpec) -> dict[str, object]:
    lookup = layers[L.HISTORY_LOOKUP]
    vocabulary = np.asarray(lookup.get_vocabulary(), dtype=str)
    positional = spec.history_pooling == "positional"
    history: dict[str, object] = {
        "history_length": spec.history_length,
        "history_vocabulary": vocabulary,
        "history_oov": int(np.flatnonzero(vocabulary == lookup.oov_token)[0]),
        "history_embedding": layers[L.HISTORY_EMBEDDING].get_weights()[0],
        "history_pooling": spec.history_pooling,
        "history_position_logits": _variable(layers[L.HISTORY_POOL], "position_logits") if positional else None,
    }
    if spec.history_recent:
        history["history_recent"] = spec.history_length - int(layers[L.HISTORY_RECENT].cropping[1])
        history["history_recent_embedding"] = layers[L.HISTORY_RECENT_EMBEDDING].get_weights()[0]
    if spec.item_item_width:
        tables = [layers[L.ITEM_ITEM_EMBEDDING].get_weights()[0]] if spec.item_item_dim else []
        if spec.item_item_prior:
            gain = np.exp(_variable(layers[L.ITEM_ITEM_PRIOR_GAIN], "log_gain"))
            tables.append(layers[L.ITEM_ITEM_PRIOR].get_weights()[0] * gain)
        history["item_item_embedding"] = np.concatenate(tables, axis=1).astype(np.float32)
        history["item_item_prior"] = spec.item_item_prior
        history["item_item_position_logits"] = _variable(layers[L.ITEM_ITEM_POOL], "position_logits")
    if spec.history_pooling == "attention":
        encoder = layers[L.HISTORY_ENCODER]
        weights = {name: np.asarray(variable.numpy(), np.float32) for name, variable in encoder.w.items()}
        history["history_encoder"] = EncoderArrays(weights=weights, heads=int(encoder.heads))
    if spec.history_ratings and spec.history_pooling != "attention":
        history["history_rating_scale"] = layers[L.HISTORY_RATING_SCALE].get_weights()[0][:, 0]
    if spec.history_ratings and spec.item_item_width:
        history["item_item_rating_scale"] = layers[L.ITEM_ITEM_RATING_SCALE].get_weights()[0][:, 0]
    return history


def _variable(layer: tf.keras.layers.Layer, name: str) -> np.ndarray:
    for variable in layer.weights:
        if variable.name.split("/")[-1].split(":")[0] == name:
            return np.asarray(variable.numpy(), dtype=np.float32)
    raise UnmirroredTowerError(f"layer {layer.name!r} has no variable {name!r}")
