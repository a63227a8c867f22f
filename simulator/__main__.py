"""``python -m simulator``: serve the KIS simulator with uvicorn (every option in simulator/README.md)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

import uvicorn

from simulator.app import DEFAULT_APPKEY, DEFAULT_APPSECRET, RATE_LIMITS, Simulator, SimulatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="A KIS Open API simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind (default 8765)")
    parser.add_argument("--mode", choices=sorted(RATE_LIMITS), default="real", help="account kind (default real)")
    parser.add_argument("--appkey", default=DEFAULT_APPKEY, help=f"the accepted app key (default {DEFAULT_APPKEY})")
    parser.add_argument(
        "--appsecret", default=DEFAULT_APPSECRET, help=f"the accepted app secret (default {DEFAULT_APPSECRET})"
    )
    parser.add_argument(
        "--appkeys", type=_appkey_pairs, default=None, metavar="KEY:SECRET,...",
        help="several accepted app keys, each with its secret, each with its own token and rate limit "
        "(instead of --appkey and --appsecret)",
    )  # fmt: skip
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=None,
        help="market clock at start, ISO 8601 with offset, e.g. 2026-11-25T10:31:00+09:00 (default: wall clock)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="market and fault seed (default 0)")
    parser.add_argument(
        "--rate-limit", type=int, default=None,
        help=f"requests/s per app key (default {RATE_LIMITS['real']} real, {RATE_LIMITS['mock']} mock: KIS's notice of 2026-04-20)",
    )  # fmt: skip
    parser.add_argument("--latency-ms", type=float, default=None, help="added latency of every API call (default 0)")
    parser.add_argument("--token-lifetime-seconds", type=float, default=86400, help="token lifetime (default 86400)")
    parser.add_argument(
        "--token-throttle-seconds", type=float, default=60, help="minimum seconds between issuances (default 60)"
    )
    parser.add_argument("--faults", type=json.loads, default=None, help="fault configuration as JSON (see README)")
    parser.add_argument(
        "--nxt-codes", type=lambda text: [c for c in text.replace(",", " ").split() if c], default=None,
        help="codes Nextrade trades, comma separated (default: the default watch-list's)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser.parse_args(argv)


def _appkey_pairs(text: str) -> list[tuple[str, str]]:
    """``KEY1:SECRET1,KEY2:SECRET2`` as (app key, app secret) pairs."""
    pairs = []
    for number, item in enumerate((part.strip() for part in text.split(",")), start=1):
        key, colon, secret = item.partition(":")
        if not (key and colon and secret):  # not echoed: it may hold a secret
            raise argparse.ArgumentTypeError(f"entry {number} is not KEY:SECRET")
        pairs.append((key, secret))
    return pairs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = SimulatorConfig(
        mode=args.mode,
        appkeys=tuple(args.appkeys or [(args.appkey, args.appsecret)]),
        now=args.now,
        seed=args.seed,
        rate_limit=args.rate_limit,
        token_lifetime_seconds=args.token_lifetime_seconds,
        token_throttle_seconds=args.token_throttle_seconds,
        faults=args.faults,
        latency_ms=args.latency_ms,
        nxt_codes=args.nxt_codes,
    )
    # The simulator's Date header is its market clock: uvicorn must not add its own.
    uvicorn.run(
        Simulator(config).app, host=args.host, port=args.port, log_level=args.log_level, date_header=False
    )


if __name__ == "__main__":
    main()
