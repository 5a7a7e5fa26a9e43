"""``python -m examples.federated --alg fedlora --vit tiny --image_size 224 ...``; see README.md."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence

import prebake

from .config import parse_args
from .run import run


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    from tqdm.auto import tqdm

    def progress(rounds: Iterable[int]) -> Iterable[int]:
        return tqdm(rounds, desc=f"{cfg.alg} rounds", unit="round", dynamic_ncols=True)

    try:
        run(cfg, progress)
    except prebake.PrebakeError as e:  # a bad --data or --cache: one line that names the path and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
