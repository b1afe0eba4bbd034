"""The query and candidate towers and the two-tower TFRS retrieval model that trains them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from contract.query_tower import RATING_LEVELS
from contract.query_tower import QueryLayer as L
from training.config import TrainConfig
from training.dataset import Vocabularies, candidate_features
from training.history_encoder import HistoryEncoder
from training.item_item_prior import ItemItemPrior

keras = tf.keras  # tf-keras (Keras 2), because training/__init__ sets TF_USE_LEGACY_KERAS=1


def dense_stack(layer_sizes: tuple[int, ...], name: str) -> tf.keras.Sequential:
    """Dense layers of the given widths, ReLU on all but the last (the embedding stays unbounded)."""
    layers = [keras.layers.Dense(size, activation="relu") for size in layer_sizes[:-1]]
    layers.append(keras.layers.Dense(layer_sizes[-1]))
    return keras.Sequential(layers, name=name)


class ClampTimestamp(tf.keras.layers.Layer):
    """Clamps timestamps into the training range, inside the exported model, so a query at "now" (years past
    MovieLens) is answered like one at the data's end instead of extrapolating the time features."""

    def __init__(self, low: int, high: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.low, self.high = int(low), int(high)

    def call(self, timestamp: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(timestamp, self.low, self.high)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "low": self.low, "high": self.high}


def _vectors_and_scale(inputs: tf.Tensor | list[tf.Tensor], mask: object) -> tuple[tf.Tensor, tf.Tensor | None, object]:
    """A pool's inputs: the vectors alone, or [vectors, per-position scale [batch, H, 1]] (their mask first)."""
    if isinstance(inputs, (list, tuple)):
        vectors, scale = inputs
        return vectors, scale[..., 0], mask[0] if isinstance(mask, (list, tuple)) else mask
    return inputs, None, mask


class MaskedMean(tf.keras.layers.Layer):
    """Mean of the unmasked vectors of each row, zeros for a row with none (an empty history); with a second
    input, each position's weight times its scale."""

    supports_masking = True

    def call(self, inputs: tf.Tensor | list[tf.Tensor], mask: object = None) -> tf.Tensor:
        vectors, scale, mask = _vectors_and_scale(inputs, mask)
        present = tf.ones(tf.shape(vectors)[:2]) if mask is None else tf.cast(mask, vectors.dtype)
        weights = present / tf.maximum(tf.reduce_sum(present, axis=1, keepdims=True), 1.0)
        if scale is not None:
            weights = weights * scale
        return tf.reduce_sum(vectors * weights[..., None], axis=1)

    def compute_mask(self, inputs: object, mask: object = None) -> None:
        return None


class PositionalPool(tf.keras.layers.Layer):
    """Weighted sum of the unmasked vectors of each row, with one learned logit per position (the history is
    newest first) and a softmax over the unmasked positions only; zero logits give the mean, and a row with
    nothing unmasked gives zeros. With a second input, each position's weight times its scale (the rating
    level's learned multiplier), after the softmax, so a scale can be negative."""

    supports_masking = True

    def __init__(self, length: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.length = int(length)

    def build(self, input_shape: object) -> None:
        self.position_logits = self.add_weight(
            name="position_logits", shape=(self.length,), initializer="zeros", trainable=True
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor | list[tf.Tensor], mask: object = None) -> tf.Tensor:
        vectors, scale, mask = _vectors_and_scale(inputs, mask)
        present = tf.ones(tf.shape(vectors)[:2]) if mask is None else tf.cast(mask, vectors.dtype)
        # exp(logit - max) keeps the softmax finite; multiplying by the mask drops padded positions.
        weights = tf.exp(self.position_logits - tf.reduce_max(self.position_logits))[None, :] * present
        weights = tf.math.divide_no_nan(weights, tf.reduce_sum(weights, axis=1, keepdims=True))
        if scale is not None:
            weights = weights * scale
        return tf.reduce_sum(vectors * weights[..., None], axis=1)

    def compute_mask(self, inputs: object, mask: object = None) -> None:
        return None

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "length": self.length}


class RatingLevel(tf.keras.layers.Layer):
    """Stars -> rating level, round(stars) clipped to 0..RATING_LEVELS - 1 (0: padded, or unknown)."""

    def call(self, rating: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.clip_by_value(tf.round(rating), 0.0, float(RATING_LEVELS - 1)), tf.int32)


# The fixed "signed" scale per rating level: unknown (a client's id, padding) 1; 1..5 stars (stars - 3) / 2.
SIGNED_SCALE = np.array([[1.0], [-1.0], [-0.5], [0.0], [0.5], [1.0]], dtype=np.float32)


def _scaled(vectors: tf.Tensor, levels: tf.Tensor | None, name: str, mode: str) -> tf.Tensor | list[tf.Tensor]:
    """A pool's inputs: the vectors, and with the history's rating levels their per-level scale: learned
    (initialised to 1: a new model starts where one that ignores the stars would) or fixed signed."""
    if levels is None:
        return vectors
    initial = keras.initializers.Constant(SIGNED_SCALE) if mode == "signed" else "ones"
    table = keras.layers.Embedding(RATING_LEVELS, 1, embeddings_initializer=initial, name=name)
    table.trainable = mode != "signed"
    return [vectors, table(levels)]


def build_query_tower(vocab: Vocabularies, config: TrainConfig) -> tf.keras.Model:
    """user_id string [batch], timestamp int64 [batch] (and history string [batch, H]) -> embedding [batch, d].

    As in the TFRS tutorial: a user-id embedding, an embedding of the timestamp discretised into
    `timestamp_buckets` equal-width buckets, and the standardised timestamp, with the timestamp first clamped
    to the training range. With `history_length` > 0, also the mean embedding of the movies the user rated
    before the query (the YouTube-DNN "watch vector", Covington et al. 2016), or with `history_pooling`
    "positional" a learned weighting of its positions (layer `history_pool`), or with "attention"
    self-attention blocks read at the newest movie (layer `history_encoder`), and with `history_recent` N the
    newest N movies one by one from a second table (layer `history_recent`); "" pads a short history. An
    unknown user_id (or "") takes the out-of-vocabulary embedding, which `user_dropout` trains. With
    `item_item_dim` D > 0 (and a history) the dense output gains D columns, `query_item_item`: the history
    pooled positionally from its own table, which the candidate tower's movie vectors score directly, an
    item-to-item term beside the dense stacks' (FISM, Kabbur et al. 2013); with `item_item_prior` R > 0 each
    history row also carries its fixed R-column EASE prior row (training/item_item_prior.py) times a gain,
    layer `item_item_prior_gain`. With `normalize_embeddings` the
    last layer, `query_normalize`, scales the embedding to unit length.
    """
    dim, spec = config.embedding_dim, config.query_spec
    user_id = keras.Input(shape=(), dtype=tf.string, name="user_id")
    timestamp = keras.Input(shape=(), dtype=tf.int64, name="timestamp")
    inputs = {"user_id": user_id, "timestamp": timestamp}

    user_index = keras.layers.StringLookup(vocabulary=vocab.user_ids, mask_token=None, name=L.USER_LOOKUP)(user_id)
    user_vector = keras.layers.Embedding(len(vocab.user_ids) + 1, dim, name=L.USER_EMBEDDING)(user_index)

    clamped = ClampTimestamp(vocab.timestamp_min, vocab.timestamp_max, name=L.TIMESTAMP_CLAMP)(timestamp)
    # Interior boundaries only: `timestamp_buckets` equal-width buckets that each hold training data. The
    # tutorial's linspace(min, max) puts the maximum alone in a last bucket, and "now", clamped to the
    # maximum, would land on that barely trained embedding.
    edges = np.linspace(vocab.timestamp_min, vocab.timestamp_max, num=config.timestamp_buckets + 1)
    boundaries = edges[1:-1].tolist()
    bucket = keras.layers.Discretization(bin_boundaries=boundaries, name=L.TIMESTAMP_BUCKETS)(clamped)
    time_vector = keras.layers.Embedding(config.timestamp_buckets, dim, name=L.TIMESTAMP_EMBEDDING)(bucket)

    normalized = keras.layers.Normalization(
        axis=None, mean=vocab.timestamp_mean, variance=vocab.timestamp_variance, name=L.TIMESTAMP_NORMALIZED
    )(clamped)
    normalized = keras.layers.Reshape((1,), name=L.TIMESTAMP_COLUMN)(normalized)
    features = [user_vector, time_vector, normalized]

    if spec.history_length > 0:
        history = keras.Input(shape=(spec.history_length,), dtype=tf.string, name="history")
        inputs["history"] = history
        history_index = keras.layers.StringLookup(vocabulary=vocab.movie_ids, mask_token="", name=L.HISTORY_LOOKUP)(
            history
        )
        history_vectors = keras.layers.Embedding(
            len(vocab.movie_ids) + 2, dim, mask_zero=True, name=L.HISTORY_EMBEDDING
        )(history_index)
        levels = None
        if spec.history_ratings:
            rating = keras.Input(shape=(spec.history_length,), dtype=tf.float32, name="history_rating")
            inputs["history_rating"] = rating
            levels = RatingLevel(name=L.HISTORY_RATING_LEVEL)(rating)
        if spec.history_pooling == "attention":
            encoder = HistoryEncoder(
                spec.history_length,
                spec.attention_heads,
                spec.attention_blocks,
                config.attention_dropout,
                ratings=levels is not None,
                name=L.HISTORY_ENCODER,
            )
            features.append(encoder(history_vectors if levels is None else [history_vectors, levels]))
        else:
            if spec.history_pooling == "positional":
                pool: tf.keras.layers.Layer = PositionalPool(spec.history_length, name=L.HISTORY_POOL)
            else:
                pool = MaskedMean(name=L.HISTORY_MEAN)
            scaled = _scaled(history_vectors, levels, L.HISTORY_RATING_SCALE, config.history_rating_scale)
            features.append(pool(scaled))
        if spec.history_recent > 0:
            # The newest movies again, each from its own slot of a second table, unpooled, in case what was rated
            # just before predicts what comes next better than a pooled taste vector does (on ML-100K it did not:
            # docs/results.md). "" (a short history) looks up row 0, a learned "nothing here".
            recent = keras.layers.Embedding(len(vocab.movie_ids) + 2, dim, name=L.HISTORY_RECENT_EMBEDDING)(
                history_index
            )
            recent = keras.layers.Cropping1D((0, spec.history_length - spec.history_recent), name=L.HISTORY_RECENT)(
                recent
            )
            features.append(keras.layers.Reshape((spec.history_recent * dim,), name=L.HISTORY_RECENT_FLAT)(recent))

    concatenated = keras.layers.Concatenate(name=L.FEATURES)(features)
    embedding = dense_stack(spec.layers, L.DENSE)(concatenated)
    if spec.item_item_width:
        # Past the dense stack: the history pooled from its own table, its own learned weight per position;
        # with a prior, each position's row also carries its fixed prior row times its gain.
        parts = []
        if spec.item_item_dim:
            parts.append(
                keras.layers.Embedding(
                    len(vocab.movie_ids) + 2, spec.item_item_dim, mask_zero=True, name=L.ITEM_ITEM_EMBEDDING
                )(history_index)
            )
        if spec.item_item_prior:
            # History rows: 0 the "" mask, 1 an unknown movie (no prior), then the catalogue.
            table = np.concatenate([np.zeros((2, spec.item_item_prior), np.float32), _prior(vocab).query])
            rows = PriorTable(table, config.item_item_prior_in_training, mask_zero=True, name=L.ITEM_ITEM_PRIOR)
            parts.append(Gain(config.item_item_prior_gain, name=L.ITEM_ITEM_PRIOR_GAIN)(rows(history_index)))
        item_vectors = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=L.ITEM_ITEM_JOIN)(parts)
        pooled = PositionalPool(spec.history_length, name=L.ITEM_ITEM_POOL)(
            _scaled(item_vectors, levels, L.ITEM_ITEM_RATING_SCALE, config.history_rating_scale)
        )
        embedding = keras.layers.Concatenate(name=L.ITEM_ITEM_CONCAT)([embedding, pooled])
    if spec.normalize:
        embedding = keras.layers.UnitNormalization(name=L.NORMALIZE)(embedding)
    return keras.Model(inputs=inputs, outputs=embedding, name="query_tower")


class GenreShares(tf.keras.layers.Layer):
    """Genres joined by "|" (string [batch]) -> float32 [batch, len(names)]: 1/k on each of a movie's k known
    genres, zeros for none, so shares @ genre embeddings = their mean.
    An input, not a lookup by movie_id, so a movie added after training is placed by its genres too."""

    def __init__(self, names: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.names = list(names)

    def call(self, genres: tf.Tensor) -> tf.Tensor:
        split = tf.strings.split(genres, sep="|").to_tensor(default_value="")  # [batch, most genres of one]
        hits = tf.cast(tf.equal(split[..., None], tf.constant(self.names or [""])), tf.float32)
        one_hot = tf.reduce_sum(hits, axis=1) if self.names else tf.zeros_like(hits[:, 0])  # [batch, names]
        return tf.math.divide_no_nan(one_hot, tf.reduce_sum(one_hot, axis=1, keepdims=True))

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "names": self.names}


class TokenDropout(tf.keras.layers.Layer):
    """Title token ids [batch, tokens] -> the same, each word (not padding) replaced by the out-of-vocabulary id
    with probability `rate` while training; unchanged at inference.

    Every training title's words are in the vocabulary, so without this the out-of-vocabulary token's
    embedding is never trained: a new movie's unseen words (its name, any year after the data) would each
    add an untrained random vector to its title. Trained this way it stands for "a word the model does not
    know", as the blanked movie_id (movie_dropout) stands for a movie it does not know."""

    OOV = 1  # TextVectorization's id for a word outside its vocabulary (0 pads)

    def __init__(self, rate: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, tokens: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training or self.rate == 0:
            return tokens
        dropped = (tokens > self.OOV) & (tf.random.uniform(tf.shape(tokens)) < self.rate)
        return tf.where(dropped, tf.constant(self.OOV, tokens.dtype), tokens)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "rate": self.rate}


def genre_names(genres: np.ndarray) -> list[str]:
    """The genres of a catalogue ("A|B" per movie), sorted: `GenreShares`' columns."""
    return sorted({g for value in genres for g in str(value).split("|") if g})


def build_candidate_tower(vocab: Vocabularies, config: TrainConfig) -> tf.keras.Model:
    """movie_id and title (string [batch]), and with `candidate_genres` genres (string [batch], "A|B") ->
    candidate embedding [batch, layers[-1] (+ item_item_dim + item_item_prior)].

    The id embedding is keyed by movie_id, not title: ML-100K has distinct movies with the same title.
    The title text (tokenised, embedded, averaged) lets similar titles share signal; `candidate_genres` adds
    the mean of the movie's genre embeddings, read from its genres (so a new movie's count too), and
    `candidate_year` its release-year bucket's embedding (looked up by movie_id). With
    `item_item_dim` D > 0 (and a history) the dense output gains the movie's own D-wide vector,
    `candidate_item_item`, then with `item_item_prior` R its fixed R-column EASE prior row. With
    `normalize_embeddings` the last layer, `candidate_normalize`, scales the embedding to unit length.
    """
    dim = config.embedding_dim
    movie_id = keras.Input(shape=(), dtype=tf.string, name="movie_id")
    title = keras.Input(shape=(), dtype=tf.string, name="title")

    movie_index = keras.layers.StringLookup(vocabulary=vocab.movie_ids, mask_token=None, name="movie_lookup")(movie_id)
    id_vector = keras.layers.Embedding(len(vocab.movie_ids) + 1, dim, name="movie_embedding")(movie_index)

    vectorizer = keras.layers.TextVectorization(max_tokens=config.max_title_tokens, name="title_tokens")
    vectorizer.adapt(vocab.titles, batch_size=8192)  # Keras' default of 32 a step took minutes on 1M titles
    tokens = vectorizer(title)
    if config.title_token_dropout:
        tokens = TokenDropout(config.title_token_dropout, name="title_token_dropout")(tokens)
    token_vectors = keras.layers.Embedding(config.max_title_tokens, dim, mask_zero=True, name="title_embedding")(tokens)
    text_vector = keras.layers.GlobalAveragePooling1D(name="title_average")(token_vectors)

    features = [id_vector, text_vector]
    inputs = {"movie_id": movie_id, "title": title}
    if config.candidate_genres:
        inputs["genres"] = keras.Input(shape=(), dtype=tf.string, name="genres")
        shares = GenreShares(genre_names(vocab.genres), name="movie_genres")(inputs["genres"])
        features.append(keras.layers.Dense(dim, use_bias=False, name="genre_embedding")(shares))
    # The year is a catalogue fact keyed by movie_id, so a fixed table inside the tower looks it up (a new movie's
    # year still reaches the tower in its title).
    if config.candidate_year:
        one_hot = _catalogue_table(year_one_hot(vocab.years, config.year_bucket_width), "movie_year")(movie_index)
        features.append(keras.layers.Dense(dim, use_bias=False, name="year_embedding")(one_hot))

    concatenated = keras.layers.Concatenate(name="candidate_features")(features)
    embedding = dense_stack(config.layers, "candidate_dense")(concatenated)
    if config.item_item_width:
        # Past the dense stack: the movie's own vector, which the query's pooled history vectors score, and its
        # fixed prior row (zeros for an unknown movie, row 0).
        item_vectors = []
        if config.item_item_dim:
            item_vectors.append(
                keras.layers.Embedding(
                    len(vocab.movie_ids) + 1, config.item_item_dim, name="movie_item_item_embedding"
                )(movie_index)
            )
        if config.item_item_prior:
            table = np.concatenate([np.zeros((1, config.item_item_prior), np.float32), _prior(vocab).candidate])
            rows = PriorTable(table, config.item_item_prior_in_training, name="movie_item_item_prior")
            item_vectors.append(rows(movie_index))
        embedding = keras.layers.Concatenate(name="candidate_item_item")([embedding, *item_vectors])
    if config.normalize_embeddings:
        embedding = keras.layers.UnitNormalization(name="candidate_normalize")(embedding)
    return keras.Model(inputs=inputs, outputs=embedding, name="candidate_tower")


def year_one_hot(years: np.ndarray, width: int) -> np.ndarray:
    """float32 [num_movies + 1, buckets]: one-hot of each movie's `width`-year bucket from the earliest year;
    column 0 is the unknown year (no year in the title, and row 0, the unknown movie)."""
    known = years[years > 0]
    first = int(known.min()) if known.size else 0
    buckets = np.where(years > 0, (years - first) // width + 1, 0)
    table = np.zeros((len(years) + 1, int(buckets.max(initial=0)) + 1), dtype=np.float32)
    table[np.arange(len(years) + 1), np.concatenate([[0], buckets])] = 1.0
    return table


def _catalogue_table(table: np.ndarray, name: str) -> tf.keras.layers.Layer:
    """A fixed lookup from a movie's row (StringLookup index, 0 = unknown) to its row of `table`."""
    return keras.layers.Embedding(
        table.shape[0],
        table.shape[1],
        embeddings_initializer=keras.initializers.Constant(table),
        trainable=False,
        name=name,
    )


def _prior(vocab: Vocabularies) -> ItemItemPrior:
    if vocab.item_item_prior is None:
        raise ValueError("item_item_prior > 0 needs the vocabularies' EASE prior (training/fit.py computes it)")
    return vocab.item_item_prior


class PriorTable(tf.keras.layers.Layer):
    """A fixed lookup from a movie's row (StringLookup index; the query's rows 0 and 1 and the candidate's row 0
    are zeros) to its row of `table`, the EASE prior. With `in_training` False, while training it looks nothing
    up and gives no columns ([..., 0]): the towers train narrower by the table's width, as if it were not
    there, and pay nothing for it (its lookups, pooling and logits were a quarter of a step's time); at
    inference it joins. `mask_zero` masks row 0, as an Embedding's does."""

    def __init__(self, table: np.ndarray, in_training: bool = True, mask_zero: bool = False, **kwargs: object):
        super().__init__(**kwargs)
        self.table = np.asarray(table, dtype=np.float32)
        self.in_training, self.mask_zero = bool(in_training), bool(mask_zero)

    def build(self, input_shape: object) -> None:
        # "embeddings", as an Embedding's: training/query_weights.py reads it with get_weights()[0].
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=self.table.shape,
            initializer=keras.initializers.Constant(self.table),
            trainable=False,
        )
        super().build(input_shape)

    def call(self, rows: tf.Tensor, training: object = None) -> tf.Tensor:
        if training and not self.in_training:
            return tf.zeros(tf.concat([tf.shape(rows), [0]], axis=0))
        return tf.gather(self.embeddings, rows)

    def compute_mask(self, inputs: tf.Tensor, mask: object = None) -> tf.Tensor | None:
        return tf.not_equal(inputs, 0) if self.mask_zero else None

    def get_config(self) -> dict[str, object]:
        shape = self.table.shape
        return {**super().get_config(), "rows": shape[0], "columns": shape[1], "in_training": self.in_training}


class Gain(tf.keras.layers.Layer):
    """x * exp(g): the weight of a fixed table against the learned ones. g is log(`gain`), fixed, or with
    `gain` None learned from 0 (in log space, so that Adam's small steps can move it by orders of magnitude).
    The mask passes through."""

    def __init__(self, gain: float | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.gain = gain

    def build(self, input_shape: object) -> None:
        start = 0.0 if self.gain is None else float(np.log(self.gain))
        self.log_gain = self.add_weight(
            name="log_gain", shape=(), initializer=keras.initializers.Constant(start), trainable=self.gain is None
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs * tf.exp(self.log_gain)

    def compute_mask(self, inputs: object, mask: object = None) -> object:
        return mask

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "gain": self.gain}


class TwoTowerModel(tfrs.Model):
    """In-batch softmax retrieval (tfrs.tasks.Retrieval), optionally with the sampling-bias (logQ) correction,
    accidental hits removed (by movie_id) and logits divided by a temperature.

    Offline figures come from training/evaluate.py, which scores exactly what the service ranks; the task
    carries no streaming top-k metric, which would only cost a pass over every movie per batch.
    """

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        sampling_bias_correction: bool = False,
        remove_accidental_hits: bool = False,
        temperature: float = 1.0,
        catalogue: dict[str, np.ndarray] | None = None,
    ):
        super().__init__()
        self.sampling_bias_correction = sampling_bias_correction
        self.temperature = temperature
        # With the catalogue (movie_id and title of every movie, in catalogue order), the loss is a softmax over
        # every movie rather than over the batch's other positives (`loss` "full_softmax").
        self.catalogue = None if catalogue is None else {k: tf.constant(v) for k, v in catalogue.items()}
        self.remove_accidental_hits = remove_accidental_hits
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.task = tfrs.tasks.Retrieval(
            temperature=None if temperature == 1.0 else temperature, remove_accidental_hits=remove_accidental_hits
        )

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        # `training` passed on: TFRS's train_step calls compute_loss, not the model, so nothing else says so to
        # the towers' layers (the history encoder's dropout, the title's token dropout).
        query = self.query_tower({name: features[name] for name in self.query_tower.input_names}, training=training)
        if self.catalogue is not None:
            # Every movie is a negative (Klenitskiy & Vasilev 2023: a full softmax is what lifts SASRec); no
            # sampling, so no logQ correction; the positive is its catalogue row.
            names = self.candidate_tower.input_names
            every = self.candidate_tower({name: self.catalogue[name] for name in names}, training=training)
            logits = tf.matmul(query, every, transpose_b=True) / self.temperature
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=features["movie_row"], logits=logits)
            return tf.reduce_sum(losses)
        candidate = self.candidate_tower(
            {name: features[name] for name in self.candidate_tower.input_names}, training=training
        )
        probability = features["candidate_probability"] if self.sampling_bias_correction else None
        # Another rating of the positive's movie in the batch is not a negative for it.
        candidate_ids = features["movie_id"] if self.remove_accidental_hits else None
        return self.task(query, candidate, candidate_sampling_probability=probability, candidate_ids=candidate_ids)


def build_model(vocab: Vocabularies, config: TrainConfig) -> tuple[TwoTowerModel, tf.keras.Model, tf.keras.Model]:
    """Builds and compiles the model under the tf.distribute strategy in scope (the default one on one machine).

    Returns:
        (model, query_tower, candidate_tower); the towers are the functional models that get exported.
    """
    with tf.distribute.get_strategy().scope():
        query_tower = build_query_tower(vocab, config)
        candidate_tower = build_candidate_tower(vocab, config)
        model = TwoTowerModel(
            query_tower,
            candidate_tower,
            config.sampling_bias_correction,
            remove_accidental_hits=config.remove_accidental_hits,
            temperature=config.temperature,
            catalogue=candidate_features(vocab) if config.loss == "full_softmax" else None,
        )
        optimizer = {"adagrad": keras.optimizers.Adagrad, "adam": keras.optimizers.Adam}[config.optimizer]
        model.compile(optimizer=optimizer(learning_rate=config.learning_rate))
    return model, query_tower, candidate_tower
