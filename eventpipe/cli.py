"""The ``eventpipe`` command: one entry point for running, feeding and querying the pipeline."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
import time

from eventpipe.ingest.keys import projects_by_key
from eventpipe.settings import Settings


def cmd_up(settings: Settings, args) -> int:
    from eventpipe.stack import LocalStack, StackError

    if args.brokers:
        settings = dataclasses.replace(settings, kafka_nodes=args.brokers)
    stack = LocalStack(settings)
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        stack.start()
    except (StackError, KeyboardInterrupt) as exc:
        print(f"eventpipe up: {exc}", file=sys.stderr)
        return 1
    projects = ", ".join(sorted(set(projects_by_key(settings).values())))
    print(
        f"""
eventpipe is up.
  collector  {stack.collector_url}/v1/batch   (projects: {projects}; keys from EVENTPIPE_WRITE_KEYS[_FILE])
  query      {stack.query_url}
  dashboard  http://127.0.0.1:{settings.processor_web_port}/dashboard
  metrics    {stack.collector_url}/metrics
Try:  eventpipe demo        then   eventpipe query "SELECT event, count() FROM events GROUP BY event"
Ctrl-C stops everything.
""",
        flush=True,
    )
    try:
        while not stopping:
            dead = [c for c in stack.children() if not c.alive()]
            if dead:
                print(f"eventpipe up: {dead[0].name} exited with {dead[0].proc.returncode}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the orderly stop short
        print("eventpipe up: stopping collector, processor, broker ...", flush=True)
        stack.stop()
    return 0


def cmd_broker(settings: Settings, args) -> int:
    from eventpipe.broker import KafkaBroker, KafkaCluster, replication_for

    nodes = args.nodes or settings.kafka_nodes
    broker = KafkaBroker(settings) if nodes == 1 else KafkaCluster(settings, nodes=nodes)
    started = time.monotonic()
    broker.start()
    replicas, min_isr = replication_for(nodes)
    print(
        f"Kafka ({nodes} node{'s' if nodes > 1 else ''}, topics with replication factor {replicas}, "
        f"min.insync.replicas {min_isr}) ready in {time.monotonic() - started:.1f}s; Ctrl-C stops it\n"
        f"  EVENTPIPE_KAFKA_BOOTSTRAP={broker.bootstrap}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    members = broker.nodes if nodes > 1 else [broker]
    try:
        while any(m.alive() for m in members):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def cmd_collector(settings: Settings, args) -> int:
    from eventpipe.ingest.server import serve

    serve(settings)
    return 0


def cmd_processor(settings: Settings, args) -> int:
    from eventpipe.processors.app import main

    main(settings)
    return 0


def cmd_migrate(settings: Settings, args) -> int:
    from eventpipe.store import Store

    store = Store(settings)
    applied = store.migrate()
    store.close()
    print("applied: " + ", ".join(applied) if applied else "the store is up to date")
    return 0


def cmd_query(settings: Settings, args) -> int:
    from eventpipe.query import QueryError, column_types, render, run_query, write_parquet

    if args.format == "parquet" and not args.output:
        print("eventpipe query: --format parquet writes a file: add --output FILE", file=sys.stderr)
        return 2
    try:
        result = run_query(settings, args.sql)
        types = column_types(settings, args.sql) if args.format == "parquet" else None
    except QueryError as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    if args.format == "parquet":
        write_parquet(result, args.output, types)
    elif args.output:
        text = render(result, args.format)
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    else:
        print(render(result, args.format), end="" if args.format == "csv" else "\n")
    if args.output:
        print(f"{len(result.rows)} rows written to {args.output}", file=sys.stderr)
    return 0


def cmd_verify(settings: Settings, args) -> int:
    from eventpipe.query import QueryError, run_query
    from eventpipe.verify import verify

    try:
        checks = verify(lambda sql: run_query(settings, sql).rows)
    except QueryError as exc:
        print(f"verify failed: {exc}", file=sys.stderr)
        return 2
    for c in checks:
        state = "ok" if c.ok else "MISMATCH"
        print(
            f"{c.table:10s} {state:8s} {c.keys} keys; {c.only_in_rollup} differ in the rollup, "
            f"{c.only_in_raw} differ in the recomputation"
        )
    return 0 if all(c.ok for c in checks) else 1


def cmd_forget(settings: Settings, args) -> int:
    from eventpipe.forget import ForgetError, run_forget

    try:
        report = run_forget(settings, args.project, args.user or "", args.anonymous_id or [])
    except (ForgetError, ValueError) as exc:
        print(f"forget failed: {exc}", file=sys.stderr)
        return 2
    print(
        f"forget {report.forget_id} ({report.via}): deleted {report.events_deleted} events and "
        f"{report.rejected_deleted} rejected events of project {report.project}; recomputed "
        f"{report.keys_1m} events_1m and {report.keys_1h} events_1h keys in {report.seconds:.2f}s; "
        f"later events suppressed until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(report.suppress_until))}"
    )
    return 0


def cmd_dlq(settings: Settings, args) -> int:
    from eventpipe.processors.dead_letters import REPLAYABLE, replay

    reasons = set(args.reason) if args.reason else REPLAYABLE
    replayed, skipped = asyncio.run(
        replay(settings.kafka_bootstrap, settings.topic_dlq, settings.topic_raw, reasons, out=sys.stderr)
    )
    print(
        f"replayed {replayed} dead letters ({', '.join(sorted(reasons))}) into {settings.topic_raw}; "
        f"skipped {skipped} (other reasons or repeats)"
    )
    return 0


def cmd_demo(settings: Settings, args) -> int:
    from eventpipe.demo import run_demo

    url = args.url or f"http://{settings.collector_host}:{settings.collector_port}"
    key = args.write_key or next(iter(projects_by_key(settings)))
    result = asyncio.run(run_demo(url, key, args.requests, args.events_per_request, seed=args.seed))
    print(f"sent {result.requests} requests ({result.events} events) in {result.seconds:.1f}s, {result.failed} failed")
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventpipe",
        description=__doc__,
        epilog="Settings come from EVENTPIPE_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run broker, processor and collector locally in the foreground")
    up.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        help="Kafka nodes: 3 = a KRaft cluster, replication factor 3 (default: EVENTPIPE_KAFKA_NODES)",
    )
    broker = sub.add_parser("broker", help="run only the local Kafka broker (or a cluster of 3)")
    broker.add_argument(
        "--nodes",
        type=int,
        choices=[1, 3],
        help="3 = a KRaft cluster of 3 broker+controller nodes on 127.0.0.1, replication "
        "factor 3, min.insync.replicas 2 (default: EVENTPIPE_KAFKA_NODES)",
    )
    sub.add_parser("collector", help="run the HTTP collector")
    sub.add_parser("processor", help="run the faust processor worker")
    sub.add_parser("migrate", help="apply ClickHouse migrations to the store")
    sub.add_parser("bench", add_help=False, help="benchmarks: load, collector, processor, e2e, smoke, micro")
    sub.add_parser(
        "plan", add_help=False, help="size a Kubernetes deployment from measured capacity and simulate its autoscalers"
    )
    q = sub.add_parser("query", help="run read-only SQL against the store (docs/queries.md)")
    q.add_argument("sql")
    q.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="table (default), csv with a header row, json {columns, rows}, or parquet (typed)",
    )
    q.add_argument("--output", "-o", metavar="FILE", help="write the result to FILE (required for parquet)")
    dlq = sub.add_parser("dlq", help="dead letters: replay fixed ones into events.raw")
    dlq.add_argument("action", choices=["replay"])
    dlq.add_argument(
        "--reason",
        action="append",
        help="replay only this reason (repeatable; default: schema_violation, too_old, invalid_field)",
    )
    sub.add_parser("verify", help="check that the rollups equal a recomputation from raw events")
    f = sub.add_parser("forget", help="delete a person's events (rollups corrected, audited) and suppress later ones")
    f.add_argument("--project", required=True)
    f.add_argument("--user", help="the person's userId")
    f.add_argument("--anonymous-id", action="append", help="an anonymousId of theirs (repeatable)")
    d = sub.add_parser("demo", help="post realistic synthetic traffic to a running collector")
    d.add_argument("--requests", type=int, default=1000)
    d.add_argument("--events-per-request", type=int, default=10)
    d.add_argument("--url", help="collector base URL (default: the configured one)")
    d.add_argument("--write-key", help="default: the first configured key")
    d.add_argument("--seed", type=int)
    return parser


COMMANDS = {
    "up": cmd_up,
    "broker": cmd_broker,
    "collector": cmd_collector,
    "processor": cmd_processor,
    "migrate": cmd_migrate,
    "query": cmd_query,
    "demo": cmd_demo,
    "verify": cmd_verify,
    "dlq": cmd_dlq,
    "forget": cmd_forget,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:  # eventpipe/plan/cli.py owns its options (and its --help)
        from eventpipe.plan.cli import main as plan_main

        return plan_main(argv[1:])
    if argv[:1] == ["bench"]:  # eventpipe/bench.py owns its options (and its --help)
        from eventpipe.bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"eventpipe: bad configuration: {exc}", file=sys.stderr)
        return 2
    from eventpipe.broker import BrokerError

    try:
        return COMMANDS[args.command](settings, args)
    except BrokerError as exc:
        print(f"eventpipe: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
