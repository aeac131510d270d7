"""The ``marketban`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from marketban import __version__


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="marketban",
        description=(
            "Enforce CSRC securities market-entry bans (证券市场禁入规定) on order flow. "
            "Configuration comes from MARKETBAN_* environment variables (see README)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"marketban {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    replay = sub.add_parser(
        "replay",
        help="decide a file of input messages offline (JSON lines, spec R7) and print the outputs",
        description=(
            "Reads JSON lines {topic, key, value|raw} in order and writes the decisions, "
            "violations and rejections they cause to standard output, as JSON lines."
        ),
    )
    replay.add_argument("file", help="the input file, or - for standard input")
    sub.add_parser(
        "worker",
        help="run the stream processor (Faust worker) on the configured Kafka cluster",
        description="Creates missing topics, recovers its tables, then decides every order.",
    )
    sub.add_parser(
        "topics", help="create the missing marketban topics and check their partition counts"
    )
    feed = sub.add_parser(
        "feed",
        help="produce a replay-format file to the input topics, waiting for the worker each time",
    )
    feed.add_argument("file", help="replay-format JSON lines, or - for standard input")
    feed.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the worker per record"
    )
    feed.add_argument(
        "--no-wait",
        action="store_true",
        help="produce as fast as possible, without waiting for the worker (outcome not ordered)",
    )
    tail = sub.add_parser(
        "tail", help="print the output topics from the beginning as replay-format JSON lines"
    )
    tail.add_argument(
        "--idle", type=float, default=5.0, help="exit after this many seconds with nothing new"
    )
    audit = sub.add_parser(
        "audit",
        help="check the output topics against the input topics and replay; exit 1 on a problem",
    )
    audit.add_argument(
        "--idle",
        type=float,
        default=10.0,
        help="stop reading a topic after this many seconds with nothing new",
    )
    demo = sub.add_parser(
        "demo",
        help="drive a running worker with a synthetic market at a steady rate; live summary",
    )
    demo.add_argument("--rate", type=float, default=1000.0, help="orders per second")
    demo.add_argument("--orders", type=int, default=1_000_000, help="orders to produce in all")
    synth = sub.add_parser(
        "synth", help="write a deterministic synthetic market in replay format to stdout"
    )
    synth.add_argument("--orders", type=int, default=100_000, help="number of orders")
    synth.add_argument("--banned-persons", type=int, default=1000, help="persons under a ban")
    synth.add_argument("--seed", type=int, default=7, help="random seed")
    bench = sub.add_parser(
        "bench", help="measure: `bench engine` (in-process, one core), `bench e2e` (on Kafka)"
    )
    bench_sub = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    bench_engine = bench_sub.add_parser(
        "engine", help="the engine on a synthetic mix, JSON bytes in to JSON bytes out"
    )
    bench_engine.add_argument("--orders", type=int, default=200_000, help="orders to decide")
    bench_engine.add_argument(
        "--banned-persons", type=int, default=10_000, help="persons under a ban (3 accounts each)"
    )
    bench_engine.add_argument(
        "--runs", type=int, default=3, help="runs; the figure is their median"
    )
    e2e = bench_sub.add_parser(
        "e2e",
        help="throughput, raw-passthrough ratio and latency on the broker (starts its own worker)",
    )
    e2e.add_argument("--orders", type=int, default=100_000, help="orders per throughput run")
    e2e.add_argument("--rate", type=float, default=2000.0, help="orders/s of the latency run")
    e2e.add_argument(
        "--latency-seconds", type=float, default=15.0, help="length of each latency run"
    )
    e2e.add_argument("--runs", type=int, default=3, help="rounds; figures are their medians")
    e2e.add_argument(
        "--warmup-orders",
        type=int,
        default=10_000,
        help="orders of a warm-up round first, in no figure (0: none)",
    )
    e2e.add_argument(
        "--banned-persons", type=int, default=10_000, help="persons under a ban (3 accounts each)"
    )
    e2e.add_argument(
        "--running-worker",
        action="store_true",
        help=(
            "measure the worker already running on MARKETBAN_TOPIC_PREFIX instead of starting one;"
            " it writes a synthetic market into that prefix's topics: never a production prefix"
        ),
    )
    reference = bench_sub.add_parser(
        "reference",
        help="reference data at a broker's size into a fresh worker, then two restarts",
    )
    reference.add_argument("--banned-persons", type=int, default=10_000, help="persons banned")
    reference.add_argument(
        "--accounts", type=int, default=1_000_000, help="linked accounts (3 per banned person)"
    )
    for name, what in (
        ("passthrough", "the raw aiokafka exactly-once copy that `bench e2e` compares against"),
        ("passthrough-per-partition", "the same copy, one transactional producer a partition"),
    ):
        copy = bench_sub.add_parser(name, help=what)
        copy.add_argument("group", help="consumer group (also the transactional id prefix)")
        copy.add_argument("output", help="topic to copy to, same partition")
        copy.add_argument("inputs", nargs="+", help="topics to copy from")
    ping = sub.add_parser("ping", help="check that the Kafka cluster answers a metadata request")
    ping.add_argument("--timeout", type=float, default=10.0, help="seconds to keep trying")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "replay":
        from marketban.entrypoints import replay_command  # noqa: PLC0415 - keeps --help fast

        return replay_command(args.file)
    if args.command in {"worker", "feed", "tail", "demo", "topics", "audit"}:
        from marketban.entrypoints import stream_command  # noqa: PLC0415 - keeps --help fast

        return stream_command(args)
    if args.command == "bench":
        from marketban.entrypoints import bench_command  # noqa: PLC0415 - keeps --help fast

        return bench_command(args)
    if args.command == "synth":
        from marketban.entrypoints import synth_command  # noqa: PLC0415 - keeps --help fast

        return synth_command(args.orders, args.banned_persons, args.seed)
    if args.command == "ping":
        from marketban.adapters.kafka_admin import ping_command  # noqa: PLC0415 - keeps --help fast

        return ping_command(args.timeout)
    parser.error(f"unknown command {args.command}")
    return 2  # pragma: no cover - parser.error exits


if __name__ == "__main__":
    sys.exit(main())
