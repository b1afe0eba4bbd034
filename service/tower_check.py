"""`python -m service.tower_check QUERY_MODEL_DIR PROBES.npz OUT.npy`: the SavedModel's answer to probe queries.

Why a separate process: loading a SavedModel is seconds of Python that holds the GIL, and the server loads a
version in a thread beside its event loop; every request would stall behind it. A version with
query_weights.npz is served in NumPy, so its SavedModel is loaded only here, once, to prove the two equal
(service.artifacts.check_query_tower compares), and the serving process never holds it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query_model", type=Path)
    parser.add_argument("probes", type=Path, help="npz: the signature's inputs (contract tower_inputs), and query")
    parser.add_argument("out", type=Path, help="where the float32 [n, d] embeddings go (.npy)")
    args = parser.parse_args(argv)
    from contract.manifest import QueryInfo
    from service.artifacts import call_query_fn, load_query_fn

    with np.load(args.probes, allow_pickle=False) as probes:
        query = QueryInfo.model_validate_json(str(probes["query"]))
        inputs = {name: probes[name] for name in probes.files if name != "query"}
    try:
        _, fn = load_query_fn(args.query_model, query)
        embeddings = call_query_fn(fn, inputs)
    except Exception as error:  # reported to the loading server as the reason it refuses the version
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    np.save(args.out, embeddings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
