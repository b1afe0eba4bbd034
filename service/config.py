"""Every serving setting, typed, read once from RECSYS_* environment variables."""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url

from contract.catalogue import YearOutside


class Settings(BaseSettings):
    """Serving settings; each field can be set as RECSYS_<FIELD NAME> (e.g. RECSYS_MODELS_DIR)."""

    # An empty variable counts as unset: compose passes `${RECSYS_ADMIN_TOKEN:-}` through as "", which must
    # leave the admin endpoints off, not guarded by an empty token.
    model_config = SettingsConfigDict(env_prefix="RECSYS_", frozen=True, extra="ignore", env_ignore_empty=True)

    # The version directory contract lives here: CURRENT, PROTECTED and one folder per version.
    models_dir: Path = Path("models")
    # POST /ratings: SQLite in WAL mode is shared safely by replicas on one host; a PostgreSQL URL for more.
    ratings_url: str = "sqlite:///data/ratings.db"
    # Loopback by default: exposing the service is a deliberate choice (Docker sets 0.0.0.0).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Upper bound on k for /recommend and /similar: deep answers cost search depth and bytes.
    max_k: int = Field(default=100, ge=1, le=10_000)
    # Most requests one POST /recommend/batch body may carry.
    max_batch_requests: int = Field(default=64, ge=1, le=1024)
    # Most ratings one POST /ratings body may carry: they are one transaction, holding the write lock while it runs.
    max_ratings_per_request: int = Field(default=1000, ge=1, le=100_000)
    # Most queued requests the batcher sends through one query_model call and one search.
    max_batch: int = Field(default=256, ge=1, le=4096)
    # Most known users whose state and answer at now a version keeps (service/at_now.py; about 5 KB each,
    # measured on ML-100K); past it the oldest kept is dropped. 0 keeps none: every request computes afresh.
    at_now_users: int = Field(default=100_000, ge=0)
    # Run each batch in a worker thread instead of on the event loop; measured slower on 2 cores (the GIL).
    batch_in_thread: bool = False
    # A user unknown to the model: answer from the popularity ranking, or 404.
    unknown_user: Literal["popular", "404"] = "popular"
    # A user with no ratings asking at now gets the movies most rated recently: each rating counts
    # 2^(-age / half-life), over the version's ratings and every one stored since (chosen on protocol T's
    # validation cold queries: benchmarks/recent_popularity.py); inf: all-time counts.
    popular_half_life_days: float = Field(default=14.0, gt=0)
    # How often that ranking reads the ratings stored since its last read.
    popular_refresh_seconds: float = Field(default=5.0, gt=0)
    # Most movies one POST /movies body may add: they are one transaction, and each is embedded before the answer.
    max_movies_per_request: int = Field(default=1000, ge=1, le=100_000)
    # How often each replica reads the catalogue changes stored since its last read (service/live_catalogue.py).
    catalogue_refresh_seconds: float = Field(default=2.0, gt=0)
    # An added movie's EASE prior row is the cosine-weighted mean of this many known movies' rows, those whose
    # title, genres and year read nearest (service/borrowed_prior.py); 0: it keeps zeros there.
    borrowed_prior_neighbours: int = Field(default=10, ge=0, le=1000)
    # How the candidate tower reads an added movie's year that the version's titles never name (one after the
    # data's end): keep it, clamp it to the nearest year they name, or drop it (contract.catalogue). Drop: on
    # item cold start with the new movies dated 15 years later, as-served hit@100 0.126 / 0.101 (seeds 0 / 1)
    # against 0.099 / 0.090 kept and 0.058 clamped (seed 0): docs/results.md.
    title_year_outside: YearOutside = "drop"
    # How often models/CURRENT is checked for a new version to hot-swap in; 0 disables polling.
    poll_seconds: float = Field(default=2.0, ge=0)
    # Bearer token for /admin/*; unset disables the admin endpoints.
    admin_token: SecretStr | None = None
    # A version is refused when its index finds less than this share of the exact top-10 of the warm-up
    # queries: an index built over other embeddings than the version's would answer wrong movies.
    min_index_recall: float = Field(default=0.8, ge=0, le=1)
    # Largest request body: a batch of 1,000 ratings fits with room to spare, and parsing it stays quick.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Largest request line plus headers; beyond it 431 and the connection closes.
    max_header_bytes: int = Field(default=16_384, ge=1024)
    # A request's headers must arrive within this many seconds of its first byte (or of the connection).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Its body within this many seconds of its headers; a stalled client otherwise holds a connection forever.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # An idle kept-alive connection is closed after this many seconds.
    keep_alive_seconds: int = Field(default=5, ge=1)
    # Open connections and requests in flight beyond this get 503: file descriptors stay available.
    max_connections: int = Field(default=1000, ge=1)
    # Record each /recommend answer (an impression) in the ratings database, written behind the request.
    impressions: bool = True
    # Impressions waiting to be written at most; beyond it (a slow or down store) they are dropped and counted.
    # At least a flush interval's answers at the highest rate served (25,000 req/s here).
    impression_queue: int = Field(default=50_000, ge=1)
    # Impressions written per transaction at most: one transaction per flush. Most of a row's cost is the
    # (user_id, shown_at) index, whose inserts land on random pages, each written whole at commit, so larger
    # transactions cost less a row: 25 / 17 / 13 us of CPU an answer at 1,500 / 5,000 / 20,000 a transaction
    # (SQLite, 200k stored; benchmarks/impression_writer.py, docs/serving-speed.md).
    impression_batch: int = Field(default=20_000, ge=1)
    # How often the writer thread hands what has queued to the writer process: a transaction per interval, not
    # a write per answer (answers queued during a write wait for the next interval: service/impressions.py). Under
    # load the writer thread's CPU fell from 15-17 to 10-11 us a request going from 0.5 to 2 s (measured before a
    # flush wrote only what had queued and before the writer process). Keep it well below
    # credit_settle_seconds: a rating is credited only once the impressions before it are written.
    impression_flush_seconds: float = Field(default=2.0, gt=0)
    # Impressions recorded longer ago than this are deleted; the online tallies they fed stay.
    impression_retention_days: float = Field(default=30.0, gt=0)
    # A rating is credited to the newest impression that showed its movie to its user this long before it.
    credit_window_days: float = Field(default=7.0, gt=0)
    # A rating is credited once this old in the store: the impression before it has been written by then.
    credit_settle_seconds: float = Field(default=5.0, ge=0)
    # How often ratings are credited, old impressions pruned and the online metrics read.
    online_refresh_seconds: float = Field(default=5.0, gt=0)
    # Share of users (by a hash of user_id) answered by models/CANARY's version while one is set.
    canary_share: float = Field(default=0.1, ge=0, le=1)
    # TensorFlow intra/inter-op threads: 1 keeps a SavedModel call steady on a busy 2-core box.
    tf_threads: int = Field(default=1, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready values, without the admin token itself or the ratings database's password."""
        shown = self.model_dump(mode="json", exclude={"admin_token"})
        shown["admin_enabled"] = self.admin_token is not None
        shown["ratings_url"] = make_url(self.ratings_url).render_as_string(hide_password=True)
        return shown
