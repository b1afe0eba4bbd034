"""Writes a deterministic synthetic MovieLens (GroupLens CSV layout) of any size, with planted structure.

Real MovieLens may not be redistributed, and ML-25M/32M are large downloads; a seeded generator lets every
machine run work of that size, and lets tests check that a model recovers structure we planted ourselves:

- each movie is a mixture over a few latent genres (its `genres` are the large components, its title words
  come from its main genre) and has a heavy-tailed (log-normal, Zipf-like) popularity, so a few movies get
  most ratings and most get a handful;
- each user has a taste over the same genres that drifts from `taste_start` to `taste_end` as time passes;
- users arrive over ML-25M's time range (user_id in arrival order); a user's first rating is at arrival and
  the rest follow over a span that grows with how much they rate;
- which movie a user rates at time t: a genre drawn from taste(t), then a movie ∝ popularity × its weight in
  that genre (sharpened), never one the user has rated; the rating grows with the cosine of taste(t) and the
  movie's factors, plus user and movie biases and noise, in whole stars before 2003 as on MovieLens.

Ratings are generated and written in blocks of consecutive users (~`block_ratings` ratings each, one seeded
stream per block), so memory stays flat however many ratings are asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Horror", "Animation")
# Share of each genre in tastes and movies, roughly MovieLens's order (Drama and Comedy dominate).
GENRE_PREVALENCE = np.array([0.26, 0.20, 0.12, 0.11, 0.10, 0.08, 0.07, 0.06])
GENRE_THRESHOLD = 0.2  # a movie lists every genre with at least this weight (and always its largest)
FIRST_TIMESTAMP = 789_652_009  # ML-25M's first and last ratings: 1995-01-09 ... 2019-11-21
LAST_TIMESTAMP = 1_574_327_703
HALF_STARS_FROM = 1_045_526_400  # 2003-02-18: MovieLens allowed half stars from then; whole stars before
MIN_PER_USER = 20  # GroupLens keeps users with at least 20 ratings (fewer only if the totals demand it)
REJECTION_ROUNDS = 8  # rounds of redrawing repeated (user, movie) pairs before the exact Gumbel completion
MIN_ACCEPTANCE = 0.1  # a user whose draws were mostly repeats is left to the Gumbel completion
GUMBEL_CELLS = 4_000_000  # users × movies keys per Gumbel chunk (32 MB of float64)
CHUNK_ROWS = 250_000  # rows per [rows, genres] temporary (16 MB of float64)
BLOCK_RATINGS = 1_000_000  # ratings per generated block: bounds memory; part of what the seed reproduces
DAY = 86_400
RATING_LABELS = pd.Index([f"{code / 2:.1f}" for code in range(11)])  # code 2·rating -> "0.5" ... "5.0"
ADJECTIVES = np.array([
    "Silent", "Broken", "Golden", "Last", "Hidden", "Dark", "Lost", "Wild", "Secret", "Burning", "Frozen", "Crimson",
    "Midnight", "Endless", "Little", "Final", "Perfect", "Distant", "Electric", "Savage", "Quiet", "Bright", "Fallen",
    "Hollow", "Iron", "Velvet", "Restless", "Northern", "Sweet", "Bitter", "Lucky", "Strange", "Eternal", "Paper",
    "Glass", "Stolen", "Second", "Open", "Long", "Blue",
])  # fmt: skip
NOUNS = np.array([  # one row per genre, in GENRES order: a title's words hint at its main genre
    ["River", "Letters", "Season", "Promise", "Family", "Winter", "Harbor", "Inheritance", "Testament", "Daughter"],
    ["Wedding", "Roommates", "Vacation", "Party", "Neighbors", "Weekend", "Bachelor", "Mix-Up", "Prank", "Sitcom"],
    ["Strike", "Mission", "Fury", "Showdown", "Pursuit", "Bullet", "Heist", "Vendetta", "Takedown", "Siege"],
    ["Witness", "Alibi", "Stranger", "Conspiracy", "Trap", "Suspect", "Motive", "Obsession", "Deadline", "Pact"],
    ["Kiss", "Heart", "Sweetheart", "Love", "Romance", "Affair", "Serenade", "Valentine", "Embrace", "Honeymoon"],
    ["Planet", "Android", "Galaxy", "Signal", "Orbit", "Machine", "Colony", "Nebula", "Paradox", "Starship"],
    ["Curse", "Haunting", "Ritual", "Crypt", "Possession", "Nightmare", "Asylum", "Hunger", "Exorcism", "Shadows"],
    ["Adventures", "Kingdom", "Dragon", "Forest", "Toys", "Critters", "Island", "Tales", "Friends", "Journey"],
])  # fmt: skip


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; the files are a function of these fields (and BLOCK_RATINGS) only."""

    users: int
    movies: int
    ratings: int
    seed: int = 0
    popularity_sigma: float = 2.5  # spread of log popularity; see `plant` for why log-normal, not Zipf
    taste_concentration: float = 0.1  # Dirichlet mass per genre: lower, users loyal to fewer genres
    movie_concentration: float = 0.15  # the same for movies: lower, fewer genres per movie
    drift_years: float = 3.0  # a user's taste is 63% of the way from start to end after this long
    sharpness: float = 3.0  # exponent on a movie's genre weight when drawn for that genre
    activity_sigma: float = 1.6  # lognormal spread of ratings per user, as fitted to ML-25M (LensKit: s=1.59)

    def __post_init__(self) -> None:
        if self.users < 1 or self.movies < 1:
            raise ValueError("--users and --movies must be at least 1")
        most = self.users * max_per_user(self.movies)
        if not self.users <= self.ratings <= most:
            raise ValueError(
                f"--ratings must be between --users ({self.users:,}: every user rates at least once) and "
                f"{most:,} (each user rates at most half the catalogue, {max_per_user(self.movies):,} movies)"
            )


def max_per_user(movies: int) -> int:
    """At most half the catalogue per user: ML-25M's heaviest rater has 32,202 of its 59,047 rated movies."""
    return max(1, movies // 2)


@dataclass(frozen=True)
class Planted:
    """The latent structure; row i of a user array is user_id i+1, row j of a movie array is movie_id j+1."""

    taste_start: np.ndarray  # float64 [users, genres], rows sum to 1: the taste at arrival
    taste_end: np.ndarray  # float64 [users, genres], rows sum to 1: where the taste drifts to
    arrival: np.ndarray  # int64 [users]: Unix seconds of the first rating, increasing with user_id
    span: np.ndarray  # int64 [users]: seconds after arrival within which the user's ratings fall
    counts: np.ndarray  # int64 [users]: ratings per user, summing to SynthSpec.ratings
    user_bias: np.ndarray  # float64 [users]: added to every rating of the user
    factors: np.ndarray  # float64 [movies, genres], rows sum to 1: the movie's genre mixture
    popularity: np.ndarray  # float64 [movies], sums to 1: log-normal weights
    movie_bias: np.ndarray  # float64 [movies]: added to every rating of the movie (popular ones score higher)
    year: np.ndarray  # int64 [movies]: a release year drawn before any rating (the title's may be earlier)
    drift_seconds: float
    sharpness: float
    affinity_mean: float  # of `affinity` over drawn ratings: centres the rating scale
    affinity_std: float

    def taste_at(self, user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
        """Taste of users (0-based rows, [n]) at Unix `timestamp`s ([n]): float64 [n, genres], rows sum to 1."""
        drift = 1.0 - np.exp(-(timestamp - self.arrival[user]) / self.drift_seconds)
        taste = np.take(self.taste_start, user, axis=0)
        taste += drift[:, None] * np.take(self.taste_end - self.taste_start, user, axis=0)
        return taste

    def affinity(self, user: np.ndarray, movie: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
        """Cosine between taste(t) and the movie's factors, float64 [n] in [0, 1]: what drives the rating."""
        taste, factors = self.taste_at(user, timestamp), self.factors[movie]
        dot = np.einsum("ij,ij->i", taste, factors)
        return dot / (np.linalg.norm(taste, axis=1) * np.linalg.norm(factors, axis=1))

    def genre_weights(self) -> np.ndarray:
        """float64 [genres, movies], rows sum to 1: p(movie | genre) ∝ popularity × factor ** sharpness.

        The sharpness keeps a blockbuster from being drawn for a genre it barely has: popularity spans orders
        of magnitude, a factor only [0, 1]. p(movie | user, t) = taste(t) @ genre_weights.
        """
        weights = (self.popularity[:, None] * self.factors**self.sharpness).T
        return weights / weights.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class SynthResult:
    """What `write_synth` wrote, with the structure behind it (for tests and benchmarks)."""

    ratings_path: Path
    movies_path: Path
    planted: Planted
    movie_counts: np.ndarray  # int64 [movies]: ratings per movie


def plant(spec: SynthSpec) -> Planted:
    """Draws the latent structure (a few MB even at ML-32M's size); deterministic in `spec`."""
    rng = np.random.default_rng([spec.seed, 0])
    concentration = len(GENRES) * GENRE_PREVALENCE
    factors = _dirichlet(rng, spec.movie_concentration * concentration, spec.movies)
    taste_start = _dirichlet(rng, spec.taste_concentration * concentration, spec.users)
    taste_end = _dirichlet(rng, spec.taste_concentration * concentration, spec.users)
    # Log-normal popularity, as LensKit's fits of ML-10M...ML-32M prefer: with sigma 2.5 and each movie rated at
    # most once per user, the most rated movie reaches about half the users and the tail stays thin (ML-25M:
    # 50%, item Gini 0.94). Zipf weights either saturate their head (every user rates the top movies) or, once
    # repeats are redrawn, leave the tail fat (Gini 0.58 at s = 1 on ML-10M's shape, against 0.81).
    popularity = np.exp(rng.normal(0.0, spec.popularity_sigma, spec.movies))
    popularity /= popularity.sum()
    percentile = np.argsort(np.argsort(popularity)) / spec.movies
    movie_bias = 0.3 * (percentile - 0.5) + rng.normal(0.0, 0.3, spec.movies)  # popular movies rate higher
    counts = _ratings_per_user(rng, spec)
    arrival = np.sort(rng.integers(FIRST_TIMESTAMP, LAST_TIMESTAMP - 30 * DAY, spec.users))
    # As in ML-100K, most users rate within a day or two and a few over years; heavy raters stay longer.
    span_days = np.exp(rng.normal(np.log(2.0), 2.5, spec.users)) * np.sqrt(counts / np.median(counts))
    span = np.clip((span_days * DAY).astype(np.int64), 60 * counts, LAST_TIMESTAMP - arrival)
    year = np.clip(2019 - rng.exponential(18.0, spec.movies).astype(np.int64), 1915, 2019)
    planted = Planted(
        taste_start, taste_end, arrival, span, counts, rng.normal(0.0, 0.4, spec.users), factors, popularity,
        movie_bias, year, spec.drift_years * 365.25 * DAY, spec.sharpness, 0.0, 1.0,
    )  # fmt: skip
    # Centre and scale the affinity on ratings drawn as the real ones are, so ratings average ~3.5.
    user = rng.integers(0, spec.users, 20_000)
    timestamp = arrival[user]
    movie = _draw_movies(rng, planted, user, timestamp, np.cumsum(planted.genre_weights(), axis=1))
    affinity = planted.affinity(user, movie, timestamp)
    return replace(planted, affinity_mean=float(affinity.mean()), affinity_std=float(affinity.std()) + 1e-9)


def write_synth(spec: SynthSpec, out: Path, block_ratings: int = BLOCK_RATINGS) -> SynthResult:
    """Writes `out`/ratings.csv and `out`/movies.csv, readable by `training.data.load_movielens`.

    ratings.csv: userId,movieId,rating,timestamp, sorted by user then time, exactly `spec.ratings` rows, no
    (user, movie) twice, every user at least once. movies.csv: movieId,title,genres for all `spec.movies`
    movies ("Silent River, The (1994)", "Drama|Romance"); some movies may have no ratings, as in ML-25M.
    Each file is written under a temporary name and renamed, so a crash never leaves a half-written pair.
    """
    out.mkdir(parents=True, exist_ok=True)
    planted = plant(spec)
    genre_weights = planted.genre_weights()
    genre_cdf = np.cumsum(genre_weights, axis=1)
    movie_counts = np.zeros(spec.movies, dtype=np.int64)
    first_rated = np.full(spec.movies, LAST_TIMESTAMP, dtype=np.int64)
    ratings_tmp, movies_tmp = out / "ratings.csv.partial", out / "movies.csv.partial"
    with ratings_tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        for index, users in enumerate(_blocks(planted.counts, block_ratings)):
            rng = np.random.default_rng([spec.seed, 1, index])
            block = _block(rng, planted, genre_weights, genre_cdf, users)
            movie = block["movieId"].to_numpy() - 1
            movie_counts += np.bincount(movie, minlength=spec.movies)
            np.minimum.at(first_rated, movie, block["timestamp"].to_numpy())
            block.to_csv(handle, header=False, index=False)
    _movies_table(spec, planted, first_rated).to_csv(movies_tmp, index=False, encoding="utf-8")
    os.replace(movies_tmp, out / "movies.csv")
    os.replace(ratings_tmp, out / "ratings.csv")
    return SynthResult(out / "ratings.csv", out / "movies.csv", planted, movie_counts)


def _dirichlet(rng: np.random.Generator, alpha: np.ndarray, rows: int) -> np.ndarray:
    """Dirichlet rows via gammas; the floor keeps every weight positive (no zero-probability genre)."""
    draws = rng.gamma(alpha, size=(rows, len(alpha))) + 1e-9
    return draws / draws.sum(axis=1, keepdims=True)


def _ratings_per_user(rng: np.random.Generator, spec: SynthSpec) -> np.ndarray:
    """Heavy-tailed counts summing exactly to `spec.ratings`, each within [floor, max_per_user]."""
    cap = max_per_user(spec.movies)
    counts = np.full(spec.users, min(MIN_PER_USER, spec.ratings // spec.users, cap), dtype=np.int64)
    weight = rng.lognormal(0.0, spec.activity_sigma, spec.users)
    left = spec.ratings - int(counts.sum())
    while left > 0:  # water-filling: share what is left by weight among users below the cap
        share = np.where(counts < cap, weight, 0.0)
        add = np.minimum(cap - counts, np.ceil(left * share / share.sum()).astype(np.int64))
        before = np.cumsum(add) - add
        add = np.clip(left - before, 0, add)  # hand out exactly `left`, in user order
        counts += add
        left -= int(add.sum())
    return counts


def _blocks(counts: np.ndarray, block_ratings: int) -> list[np.ndarray]:
    """Consecutive users in groups of ~`block_ratings` ratings: 0-based user rows, one array per block."""
    block_of = (np.cumsum(counts) - counts) // block_ratings
    starts = np.flatnonzero(np.diff(block_of, prepend=-1))
    return np.split(np.arange(len(counts)), starts[1:])


def _draw_movies(
    rng: np.random.Generator, planted: Planted, user: np.ndarray, timestamp: np.ndarray, genre_cdf: np.ndarray
) -> np.ndarray:
    """One movie per (user, timestamp) [n]: a genre from taste(t), then a movie ∝ popularity × factor."""
    movie = np.empty(len(user), dtype=np.int64)
    for part in _slices(len(user)):
        cumulative = np.cumsum(planted.taste_at(user[part], timestamp[part]), axis=1)
        genre = (rng.random(len(cumulative))[:, None] > cumulative).sum(axis=1)
        draws = rng.random(len(cumulative))
        chunk = movie[part]  # a view: filled in place
        for k in range(len(GENRES)):
            chosen = np.minimum(genre, len(GENRES) - 1) == k
            chunk[chosen] = np.searchsorted(genre_cdf[k], draws[chosen] * genre_cdf[k, -1], side="right")
    return np.minimum(movie, genre_cdf.shape[1] - 1)


def _slices(n: int) -> list[slice]:
    """Consecutive slices of at most CHUNK_ROWS rows: the [rows, genres] temporaries stay small."""
    return [slice(start, min(n, start + CHUNK_ROWS)) for start in range(0, n, CHUNK_ROWS)]


def _block(
    rng: np.random.Generator, planted: Planted, genre_weights: np.ndarray, genre_cdf: np.ndarray, users: np.ndarray
) -> pd.DataFrame:
    """All ratings of `users` (consecutive rows) as ratings.csv rows, sorted by user, then time."""
    counts = planted.counts[users]
    user, movie, timestamp = _draw_by_rejection(rng, planted, genre_cdf, users, counts)
    missing = counts - np.bincount(user - users[0], minlength=len(users))
    if missing.any():
        short = missing > 0
        extra = _complete_by_gumbel(rng, planted, genre_weights, users[short], missing[short], user, movie)
        user, movie, timestamp = (np.concatenate(pair) for pair in zip((user, movie, timestamp), extra, strict=True))
    order = np.lexsort((movie, timestamp, user))
    user, movie, timestamp = user[order], movie[order], _distinct_times(user[order], timestamp[order])
    codes = _rating_codes(rng, planted, user, movie, timestamp)
    return pd.DataFrame(
        {
            "userId": user + 1,
            "movieId": movie + 1,
            "rating": pd.Categorical.from_codes(codes, categories=RATING_LABELS),
            "timestamp": timestamp,
        }
    )


def _draw_by_rejection(
    rng: np.random.Generator, planted: Planted, genre_cdf: np.ndarray, users: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's ratings drawn at their times from taste(t) × popularity; a repeated movie is drawn again.

    Redrawing a repeat from the same distribution is sampling without replacement, exactly. Each round asks a
    user for their missing ratings over their last acceptance rate (the surplus is dropped, latest first); a
    user whose draws were mostly repeats (a heavy rater who has used up their likely movies) stops, and
    `_complete_by_gumbel` finishes them: redrawing would cost more than a pass over the catalogue.
    Returns 0-based user and movie rows and timestamps, int64 [n] each, n <= counts.sum().
    """
    num_movies = len(planted.factors)
    user = movie = timestamp = np.empty(0, dtype=np.int64)
    ask, got = counts.copy(), np.zeros_like(counts)
    for round_ in range(REJECTION_ROUNDS):
        new_user = np.repeat(users, ask)
        elapsed = rng.random(len(new_user)) ** 2  # activity is densest soon after arrival
        if round_ == 0:
            elapsed[np.cumsum(ask) - ask] = 0.0  # the first rating is at arrival, and always kept
        new_time = planted.arrival[new_user] + (elapsed * planted.span[new_user]).astype(np.int64)
        new_movie = _draw_movies(rng, planted, new_user, new_time, genre_cdf)
        user, movie = np.concatenate([user, new_user]), np.concatenate([movie, new_movie])
        timestamp = np.concatenate([timestamp, new_time])
        _, first = np.unique(user * num_movies + movie, return_index=True)
        first.sort()  # draw order: a pair's first draw wins, and earlier rounds come first
        first = first[_first_of_each(user[first], counts[user[first] - users[0]])]
        user, movie, timestamp = user[first], movie[first], timestamp[first]
        accepted = np.bincount(user - users[0], minlength=len(users)) - got
        got += accepted
        need = counts - got
        if not need.any():
            break
        rate = accepted / np.maximum(ask, 1)
        ask = np.where(rate >= MIN_ACCEPTANCE, np.ceil(need / np.maximum(rate, MIN_ACCEPTANCE)), 0).astype(np.int64)
        if not ask.any():
            break
    return user, movie, timestamp


def _complete_by_gumbel(
    rng: np.random.Generator,
    planted: Planted,
    genre_weights: np.ndarray,
    short: np.ndarray,
    missing: np.ndarray,
    user: np.ndarray,
    movie: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `missing` ratings of each `short` user, among movies their `user`/`movie` rows do not hold yet.

    The k largest of log p(movie) + Gumbel noise are an exact draw of k without replacement, however deep into
    the tail it must go (p: the user's distribution at the middle of their span). It costs a pass over the
    catalogue per user, so it only finishes the few heavy raters that rejection left short.
    """
    num_movies = genre_weights.shape[1]
    by_user = np.argsort(user, kind="stable")
    rated_user, rated_movie = user[by_user], movie[by_user]
    rows = max(1, GUMBEL_CELLS // num_movies)
    picked = []
    for start in range(0, len(short), rows):
        chunk, need = short[start : start + rows], missing[start : start + rows]
        middle = planted.arrival[chunk] + planted.span[chunk] // 2
        keys = np.log(planted.taste_at(chunk, middle) @ genre_weights) + rng.gumbel(size=(len(chunk), num_movies))
        low, high = np.searchsorted(rated_user, [chunk[0], chunk[-1] + 1])
        inside = np.isin(rated_user[low:high], chunk)
        keys[np.searchsorted(chunk, rated_user[low:high][inside]), rated_movie[low:high][inside]] = -np.inf
        kmax = int(need.max())
        top = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
        picked.append(top[np.arange(kmax) < need[:, None]])
    new_user = np.repeat(short, missing)
    elapsed = rng.random(len(new_user)) ** 2
    new_time = planted.arrival[new_user] + (elapsed * planted.span[new_user]).astype(np.int64)
    return new_user, np.concatenate(picked), new_time


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of `group` (sorted), e.g. [5, 5, 7] -> [0, 1, 0]."""
    starts = np.flatnonzero(np.diff(group, prepend=group[:1] - 1))
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))


def _first_of_each(user: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Mask of each user's first `limit` rows, in the rows' order ([n] each)."""
    order = np.argsort(user, kind="stable")
    keep = np.zeros(len(user), dtype=bool)
    keep[order[_rank_in_group(user[order]) < limit[order]]] = True
    return keep


def _distinct_times(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Moves tied timestamps of a user a second apart (rows sorted by user, time), so "before t" is a total order.

    A running maximum of t - rank, per user (the user's offset keeps users apart), plus the rank again.
    """
    rank = _rank_in_group(user)
    offset = (user - user[0]) * (1 << 40)  # past any timestamp, so one user's maximum never reaches the next
    return np.maximum.accumulate(timestamp - rank + offset) - offset + rank


def _rating_codes(
    rng: np.random.Generator, planted: Planted, user: np.ndarray, movie: np.ndarray, timestamp: np.ndarray
) -> np.ndarray:
    """2 × rating (1..10) from affinity, biases and noise: whole stars before 2003, half stars after."""
    affinity = np.concatenate([planted.affinity(user[p], movie[p], timestamp[p]) for p in _slices(len(user))])
    affinity = (affinity - planted.affinity_mean) / planted.affinity_std
    raw = 3.55 + 0.6 * affinity + planted.user_bias[user] + planted.movie_bias[movie] + rng.normal(0.0, 0.65, len(user))
    half_stars = timestamp >= HALF_STARS_FROM
    codes = np.where(half_stars, np.rint(2 * raw), 2 * np.rint(raw))
    return np.clip(codes, np.where(half_stars, 1, 2), 10).astype(np.int8)


def _movies_table(spec: SynthSpec, planted: Planted, first_rated: np.ndarray) -> pd.DataFrame:
    """movieId, title with year, genres; a movie's year is never after its first rating."""
    rng = np.random.default_rng([spec.seed, 2])
    rated_year = first_rated.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    year = np.minimum(planted.year, rated_year)
    main = planted.factors.argmax(axis=1)
    noun = NOUNS[main, rng.integers(0, NOUNS.shape[1], spec.movies)]
    adjective = ADJECTIVES[rng.integers(0, len(ADJECTIVES), spec.movies)]
    article = np.where(rng.random(spec.movies) < 0.3, ", The", "")  # MovieLens writes "Matrix, The (1999)"
    title = pd.Series(adjective) + " " + noun + article + " (" + year.astype(str) + ")"
    listed = (planted.factors >= GENRE_THRESHOLD) | (planted.factors == planted.factors.max(axis=1, keepdims=True))
    code = listed @ (1 << np.arange(len(GENRES)))
    names = [
        "|".join(sorted(GENRES[k] for k in range(len(GENRES)) if bits >> k & 1)) for bits in range(1 << len(GENRES))
    ]
    return pd.DataFrame(
        {"movieId": np.arange(1, spec.movies + 1), "title": title, "genres": np.array(names, dtype=object)[code]}
    )
