"""The ceiling for load_recommend.py: a bare FastAPI async endpoint answering a fixed /recommend-sized body.

Same framework, server options and URL shape as the real service, no model: whatever /recommend costs
beyond this is the service's own work.
"""

import orjson
from fastapi import FastAPI, Response

app = FastAPI()

_BODY = orjson.dumps(
    {
        "user_id": "42",
        "timestamp": 879024327,
        "model_version": "bare",
        "known_user": True,
        "items": [
            {"rank": rank, "movie_id": str(rank), "title": "A Movie Title (1997)", "genres": ["Drama"], "score": 1.5}
            for rank in range(1, 11)
        ],
    }
)


@app.get("/recommend")
async def recommend(user_id: str) -> Response:
    return Response(_BODY, media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"status":"ready"}', media_type="application/json")
