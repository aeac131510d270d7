"""Command implementations: build the pieces from the settings and run them (one bootstrap)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from aiokafka.errors import KafkaError

from marketban.adapters import eventloop
from marketban.bench.engine import bench_engine
from marketban.domain.calendars import default_calendar
from marketban.domain.engine import Engine
from marketban.service.replay import replay
from marketban.service.synthetic import generate
from marketban.settings import Settings, proxy_config


def build_engine(settings: Settings) -> Engine:
    """The engine with the calendar (and published holidays) and R8 parameters of the settings."""
    return Engine(default_calendar(settings.holidays_file), proxy=proxy_config(settings))


def replay_command(file: str) -> int:
    """``marketban replay FILE``: exit 0 once the whole input was read."""
    settings = Settings()
    try:
        engine = build_engine(settings)
    except (OSError, ValueError, KeyError) as exc:
        print(f"marketban replay: cannot load the holidays file: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    out = sys.stdout.buffer
    try:
        if file == "-":
            replay(engine, sys.stdin.buffer, out)
        else:
            with Path(file).open("rb") as lines:
                replay(engine, lines, out)
    except OSError as exc:
        print(f"marketban replay: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        out.flush()
    return 0


def synth_command(orders: int, banned_persons: int, seed: int) -> int:
    """``marketban synth``: the synthetic market on standard output."""
    out = sys.stdout.buffer
    try:
        out.writelines(generate(orders, banned_persons=banned_persons, seed=seed))
    except BrokenPipeError:
        return 0  # the reader (e.g. head) had enough
    out.flush()
    return 0


def stream_command(args: argparse.Namespace) -> int:
    """``marketban worker|feed|tail|...``: the commands that talk to Kafka; 2 when it cannot."""
    settings = Settings()
    try:
        return _stream_command(args, settings)
    except CLUSTER_ERRORS as exc:
        return cluster_unreachable(args.command, settings, exc)


#: What a client raises when the cluster is unreachable or refuses it (aiokafka's errors are
#: KafkaError; a refused TCP connection a ConnectionError).
CLUSTER_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError)


def cluster_unreachable(command: str, settings: Settings, exc: BaseException) -> int:
    """Say in one line which cluster did not answer and what to check; exit status 2."""
    what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(  # noqa: T201 - the command's own answer
        f"marketban {command}: the Kafka cluster at {settings.kafka_bootstrap} did not answer or "
        f"refused the client ({type(exc).__name__}: {what}); check MARKETBAN_KAFKA_BOOTSTRAP "
        "and MARKETBAN_KAFKA_SECURITY_PROTOCOL",
        file=sys.stderr,
    )
    return 2


def _stream_command(args: argparse.Namespace, settings: Settings) -> int:
    from marketban.adapters.kafka_admin import access_status  # noqa: PLC0415 - imports aiokafka

    if args.command != "worker":
        # A client logs every failed connection attempt; the command says it once, in one line.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if (status := access_status(settings)) is not None:
        return status
    if args.command == "worker":
        from marketban.adapters.calendar_cache import cached_calendar  # noqa: PLC0415
        from marketban.adapters.worker import run_worker  # noqa: PLC0415 - imports Faust

        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s"
        )
        calendar = cached_calendar(Path(settings.data_dir), settings.holidays_file)
        return run_worker(settings, calendar)
    if args.command == "audit":
        from marketban.adapters.audit_reader import audit_command  # noqa: PLC0415

        return audit_command(settings, args.idle)
    if args.command == "topics":
        from marketban.adapters.kafka_admin import topics_command  # noqa: PLC0415

        return topics_command(settings)
    from marketban.adapters.feed_tail import feed_command, tail_command  # noqa: PLC0415

    if args.command == "demo":
        from marketban.adapters.demo import demo_command  # noqa: PLC0415

        return demo_command(settings, args.rate, args.orders)
    if args.command == "feed":
        return feed_command(settings, args.file, args.timeout, wait=not args.no_wait)
    return tail_command(settings, args.idle)


def bench_command(args: argparse.Namespace) -> int:
    """``marketban bench engine|e2e|passthrough``: prints the figures as one final JSON line."""
    settings = Settings()
    try:
        return _bench_command(args, settings)
    except CLUSTER_ERRORS as exc:
        return cluster_unreachable(f"bench {args.bench}", settings, exc)


def _bench_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.bench != "engine":
        from marketban.adapters.kafka_admin import access_status  # noqa: PLC0415

        if (status := access_status(settings)) is not None:
            return status
    if args.bench in {"passthrough", "passthrough-per-partition"}:
        from marketban.bench.passthrough import passthrough_command  # noqa: PLC0415

        per_partition = args.bench == "passthrough-per-partition"
        return passthrough_command(
            settings.kafka(), args.group, args.inputs, args.output, per_partition=per_partition
        )
    if args.bench == "reference":
        from marketban.bench.reference import bench_reference  # noqa: PLC0415

        figures = eventloop.run(bench_reference(settings, args.banned_persons, args.accounts))
        print(json.dumps(figures))  # noqa: T201
        return 0
    if args.bench == "e2e":
        from marketban.bench.e2e import E2EOptions, bench_e2e  # noqa: PLC0415

        opts = E2EOptions(
            orders=args.orders,
            rate=args.rate,
            latency_s=args.latency_seconds,
            runs=args.runs,
            warmup_orders=args.warmup_orders,
            banned_persons=args.banned_persons,
            start_worker=not args.running_worker,
        )
        result = eventloop.run(bench_e2e(settings, opts, sys.stderr))
    else:
        result = bench_engine(
            default_calendar(settings.holidays_file), args.orders, args.banned_persons, args.runs
        )
    print(json.dumps(result))  # noqa: T201
    return 0
