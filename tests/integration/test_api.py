"""The query API on the real broker: two workers share the partitions after a scenario was fed.

Account-keyed requests must reach the worker that owns the account, whichever worker is asked;
the register and violations are answered by either. Expected values come from the same scenario
replayed in-process (the engine the stream runs), so the API is checked against replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from openapi_spec_validator import validate

from marketban.adapters.processes import Child, wait_ready
from marketban.domain.calendars import default_calendar
from marketban.domain.engine import Engine
from marketban.domain.models import Order
from marketban.service import queries
from marketban.service.openapi import openapi
from marketban.service.replay import replay
from tests.integration.api import eventually
from tests.integration.api import http as _http
from tests.integration.stream import cli, start_worker, wait_caught_up, worker_env

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).parents[1] / "scenarios" / "rules.jsonl"
TOKEN = "api-test-token"  # noqa: S105 - a test credential
ANALYST_TOKEN = "li-wei-token"  # noqa: S105 - a test credential, in the tokens file by its hash
ANALYST = "li.wei"


def http(port: int, path: str, *, token: str | None = TOKEN, **kw: Any) -> tuple[int, Any]:
    """The API as an analyst calls it: with a token unless the test says otherwise."""
    return _http(port, path, token=token, **kw)


ACCOUNTS = ("A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A10", "A11")
ORDER_QUERY = (
    "exchange=XSHG&security=600000&side=buy&quantity=100&price=10.50&broker=B001"
    "&entered_at=2024-05-13T10:00:00%2B08:00"
)


@dataclass
class Cluster:
    ports: list[int]
    envs: list[dict[str, str]]
    workers: list[Child]
    prefix: str
    bootstrap: str
    expected: Engine


def replayed() -> tuple[Engine, list[dict[str, Any]]]:
    """The engine after replaying the scenario in-process, and the outputs it gave."""
    engine = Engine(default_calendar())
    out = io.BytesIO()
    replay(engine, SCENARIO.read_bytes().splitlines(), out)
    return engine, [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("api")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    base = dict(os.environ)
    tokens = tmp / "tokens"
    digest = hashlib.sha256(ANALYST_TOKEN.encode()).hexdigest()
    tokens.write_text(f"# analysts\n{digest} {ANALYST}\n", encoding="utf-8")
    base.update(
        MARKETBAN_KAFKA_BOOTSTRAP=kafka_bootstrap,
        MARKETBAN_TOPIC_PREFIX=prefix,
        MARKETBAN_API_TOKEN=TOKEN,
        MARKETBAN_API_TOKENS_FILE=str(tokens),
    )
    envs = [worker_env(base, tmp / f"data{i}") for i in range(2)]
    workers: list[Child] = []
    try:
        for i, env in enumerate(envs):
            workers.append(start_worker(env, tmp / f"worker{i}.log"))
        ports = [int(env["MARKETBAN_WEB_PORT"]) for env in envs]
        for worker, port in zip(workers, ports, strict=True):
            wait_ready(worker, port, 120)  # again: the second worker's join rebalanced both
        cli(envs[0], "feed", str(SCENARIO))
        asyncio.run(wait_caught_up(kafka_bootstrap, prefix))
        for worker, port in zip(workers, ports, strict=True):
            wait_ready(worker, port, 120)
        yield Cluster(ports, envs, workers, prefix, kafka_bootstrap, replayed()[0])
    finally:
        for worker in workers:
            worker.stop()


def test_each_account_is_answered_alike_by_either_worker_from_its_owner(cluster: Cluster) -> None:
    routed_elsewhere = 0
    for account in ACCOUNTS:
        answers = [http(port, f"/api/accounts/{account}?at=2024-05-13") for port in cluster.ports]
        assert answers[0][0] == 200, answers[0]
        assert answers[0] == answers[1], account
        # Asked as if already passed on, a worker answers only for its own tasks; the other
        # says 503 (never a 404 it cannot know), so the owner answered for it above.
        local = [
            http(
                port, f"/api/accounts/{account}?at=2024-05-13", headers={"X-Marketban-Routed": "1"}
            )
            for port in cluster.ports
        ]
        assert sorted(status for status, _ in local) == [200, 503]
        routed_elsewhere += [status for status, _ in local].count(503)
    assert routed_elsewhere > 0, "every account sat on both workers: routing was not exercised"


def test_account_view_equals_what_replay_gives_for_the_same_day(cluster: Cluster) -> None:
    state = cluster.expected.state
    for account in ("A1", "A2", "A10"):
        status, body = http(cluster.ports[1], f"/api/accounts/{account}?at=2024-05-13")
        assert status == 200
        expected = queries.account_view(
            account,
            state.links.get(account),
            state.persons,
            state.accounts.get(account),
            today=date(2024, 5, 13),
            session=date.fromisoformat(body["session"]),
        )
        assert body == json.loads(expected.model_dump_json())
    _, a1 = http(cluster.ports[0], "/api/accounts/A1?at=2024-05-13")
    assert a1["person_id"] == "P1"
    assert {m["kind"] for m in a1["measures"]} == {"trading", "business"}
    assert any(m["end"] is None for m in a1["measures"])  # the lifetime business measure


def test_unknown_account_and_bad_day_are_json_errors(cluster: Cluster) -> None:
    status, body = http(cluster.ports[0], "/api/accounts/NO-SUCH-ACCOUNT")
    assert (status, body["status"]) == (404, 404)
    assert "NO-SUCH-ACCOUNT" in body["error"]
    # A9 only sent orders and was never linked: an unlinked account keeps no state.
    assert http(cluster.ports[1], "/api/accounts/A9")[0] == 404
    status, body = http(cluster.ports[0], "/api/accounts/A1?at=yesterday")
    assert status == 400
    assert body["error"].startswith("invalid parameters: at:")


def test_check_is_a_dry_run_that_reserves_nothing(cluster: Cluster) -> None:
    before = http(cluster.ports[0], "/api/accounts/A1?at=2024-05-13")[1]
    for port in cluster.ports:
        status, body = http(port, f"/api/check?account_id=A1&{ORDER_QUERY}")
        assert status == 200, body
        assert body["dry_run"] is True
        assert body["decision"]["verdict"] == "block"
        assert body["decision"]["order_id"] == "dry-run"
        assert body["violation"] == "blocked_attempt"
    assert http(cluster.ports[0], "/api/accounts/A1?at=2024-05-13")[1] == before
    for account in ("A2", "A4", "A-UNLINKED"):  # as the replayed engine's own dry run says
        status, body = http(cluster.ports[1], f"/api/check?account_id={account}&{ORDER_QUERY}")
        assert status == 200, body
        fields = dict(urllib.parse.parse_qsl(ORDER_QUERY), account_id=account, order_id="dry-run")
        fields["quantity"] = int(fields["quantity"])
        expected = cluster.expected.dry_run(Order.model_validate(fields))[0][2]
        assert body["decision"] == json.loads(expected.model_dump_json())


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        (ORDER_QUERY, 400, "account_id is required"),
        (f"account_id=A1&{ORDER_QUERY.replace('quantity=100', 'quantity=-5')}", 400, "quantity"),
        (f"account_id=A1&{ORDER_QUERY.replace('side=buy', 'side=hold')}", 400, "side"),
        (f"account_id=A1&order_id=<last of A1>&{ORDER_QUERY}", 409, "duplicate order_id"),
    ],
)
def test_check_refuses_what_is_not_an_order(
    cluster: Cluster, query: str, status: int, text: str
) -> None:
    # An order id the account still remembers: its last one (older ones are evicted, R5).
    last = [o["value"]["order_id"] for o in replayed()[1] if o["topic"] == "decisions"
            and o["value"]["account_id"] == "A1"][-1]  # fmt: skip
    answer = http(cluster.ports[0], f"/api/check?{query.replace('<last of A1>', last)}")
    assert answer[0] == status, answer
    assert text in answer[1]["error"]


def test_ban_register_pages_through_every_decision_once(cluster: Cluster) -> None:
    expected = {r.decision_id for r in cluster.expected.state.persons.decisions()}
    seen: list[str] = []
    offset = 0
    while True:
        status, page = http(cluster.ports[0], f"/api/bans?offset={offset}&limit=4")
        assert status == 200
        assert page["total"] == len(expected)
        seen += [e["decision_id"] for e in page["items"]]
        offset += 4
        if offset >= page["total"]:
            break
    assert sorted(seen) == sorted(expected)
    served = [http(cluster.ports[1], f"/api/bans/{d}")[1]["served_on"] for d in seen]
    assert served == sorted(served, reverse=True)
    _, p1 = http(cluster.ports[1], "/api/bans?person_id=P1")
    assert p1["total"] >= 1
    assert all(e["person_id"] == "P1" for e in p1["items"])


def test_ban_detail_has_its_version_history_and_unknown_ids_are_404(cluster: Cluster) -> None:
    amended = [r for r in cluster.expected.state.persons.decisions() if len(r.history) > 1]
    assert amended, "the scenario amends or revokes at least one decision"
    record = amended[0]
    status, body = http(cluster.ports[0], f"/api/bans/{record.decision_id}")
    assert status == 200
    assert [(c["version"], c["action"]) for c in body["history"]] == [
        (c.version, c.action) for c in record.history
    ]
    assert body["person_name"] == record.person_name
    assert http(cluster.ports[0], "/api/bans/CSRC-NOPE")[0] == 404


@pytest.mark.parametrize(
    "query", ["limit=0", f"limit={queries.MAX_PAGE + 1}", "offset=-1", "offset=x"]
)
def test_paging_parameters_out_of_range_are_400(cluster: Cluster, query: str) -> None:
    for path in ("/api/bans", "/api/violations"):
        status, body = http(cluster.ports[0], f"{path}?{query}")
        assert status == 400, (path, body)
        assert body["error"].startswith("invalid parameters")


def test_violations_are_those_replay_gives_and_filter_by_kind_broker_session(
    cluster: Cluster,
) -> None:
    _, outputs = replayed()
    violations = [o["value"] for o in outputs if o["topic"] == "violations"]
    total = eventually(
        lambda: http(cluster.ports[1], "/api/violations?limit=1")[1]["total"] == len(violations),
        what="every violation read by the worker's violations view",
    )
    assert total
    _, page = http(cluster.ports[1], f"/api/violations?limit={queries.MAX_PAGE}")
    assert sorted(e["violation"]["violation_id"] for e in page["items"]) == sorted(
        v["violation_id"] for v in violations
    )
    breaches = sum(v["kind"] == "executed_breach" for v in violations)
    assert http(cluster.ports[0], "/api/violations?kind=executed_breach")[1]["total"] == breaches
    first_day = sum(v["session"] == "2024-05-13" for v in violations)
    assert http(cluster.ports[0], "/api/violations?session=2024-05-13")[1]["total"] == first_day
    assert http(cluster.ports[0], "/api/violations?broker=B999")[1]["total"] == 0
    assert http(cluster.ports[0], "/api/violations?kind=parking")[0] == 400
    assert http(cluster.ports[0], "/api/violations?session=13.05.2024")[0] == 400


def test_acknowledging_needs_the_token_and_is_recorded_on_kafka(cluster: Cluster) -> None:
    vid = "blocked_attempt:O-02"
    path = f"/api/violations/{vid}/acknowledge"
    body = json.dumps({"note": "broker called", "by": "analyst-1"}).encode()
    assert http(cluster.ports[0], path, method="POST", body=body, token=None)[0] == 401
    assert http(cluster.ports[0], path, method="POST", body=body, token="wrong")[0] == 403  # noqa: S106
    status, answer = http(cluster.ports[0], path, method="POST", body=b"{not json", token=TOKEN)
    assert status == 400
    status, answer = http(cluster.ports[0], path, method="POST", body=body, token=TOKEN)
    assert status == 202, answer
    assert answer["violation_id"] == vid
    missing = "/api/violations/blocked_attempt:NOPE/acknowledge"
    assert http(cluster.ports[0], missing, method="POST", body=body, token=TOKEN)[0] == 404
    for port in cluster.ports:  # every worker's view hears of it from the topic
        entry = eventually(
            lambda port=port: http(port, f"/api/violations/{vid}")[1].get("disposition"),
            what="the disposition in the violations view",
        )
        assert entry["note"] == "broker called"
    records = asyncio.run(read_all(cluster.bootstrap, f"{cluster.prefix}violation-dispositions"))
    # Who acted is the token's analyst (the one-person token's), not the name the body claims.
    assert [(k, v["by"]) for k, v in records] == [(vid, "operator")]


async def read_all(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [(r.key.decode(), json.loads(r.value)) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


async def test_violation_stream_sends_a_new_violation_as_it_happens(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{cluster.ports[0]}/api/violations/stream"
    late = tmp_path / "late.jsonl"
    order = {
        "order_id": "O-LIVE-1", "account_id": "A1", "exchange": "XSHG", "security": "600000",
        "side": "buy", "quantity": 100, "price": "10.50",
        "entered_at": "2024-05-14T10:00:00+08:00", "broker": "B007",
    }  # fmt: skip
    late.write_text(json.dumps({"topic": "orders", "key": "A1", "value": order}) + "\n")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=auth) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await asyncio.to_thread(cli, cluster.envs[1], "feed", str(late))
        event = await asyncio.wait_for(next_event(response), 60)
    assert event["violation"]["violation_id"] == "blocked_attempt:O-LIVE-1"
    assert event["violation"]["broker"] == "B007"


async def next_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            data.append(line[6:])
        elif not line and data:
            return json.loads("\n".join(data))
    raise AssertionError("the stream ended")


def test_stats_count_decisions_by_verdict_and_violations_by_kind(cluster: Cluster) -> None:
    _, outputs = replayed()
    blocks = sum(o["topic"] == "decisions" and o["value"]["verdict"] == "block" for o in outputs)

    def counted() -> dict[str, Any] | None:
        # A task's counts are sent at most every MARKETBAN_DECISION_COUNTS_EVERY (1 s).
        status, stats = http(cluster.ports[1], "/api/stats?minutes=60")
        assert status == 200
        # the stream test may add one more
        return stats if stats["totals"].get("verdict:block", 0) >= blocks else None

    stats = eventually(counted, within_s=15, what=f"{blocks} blocks counted")
    assert sum(stats["series"][-1].get(k, 0) for k in stats["totals"]) > 0
    assert http(cluster.ports[1], "/api/stats?minutes=0")[0] == 400


def test_openapi_document_is_served_valid(cluster: Cluster) -> None:
    status, document = http(cluster.ports[0], "/api/openapi.json")
    assert status == 200
    validate(document)
    assert document == json.loads(json.dumps(openapi()))


def test_metrics_count_what_both_workers_decided_without_personal_labels(cluster: Cluster) -> None:
    _, outputs = replayed()
    decided = sum(o["topic"] == "decisions" for o in outputs)
    total = 0.0
    for port in cluster.ports:
        status, text = http(port, "/metrics")
        assert status == 200
        assert "marketban_decision_latency_seconds_bucket" in text
        assert "marketban_event_loop_lag_seconds_count" in text
        assert "marketban_consumer_lag" in text
        assert 'marketban_table_entries{table="ban_register"}' in text
        for line in text.splitlines():
            if line.startswith("marketban_decisions_total{"):
                total += float(line.rsplit(" ", 1)[1])
        for private in ('"A1"', '"P1"', "测试", '"O-02"', '"CSRC-1"', "3a:80", "3A:80", "10.8.0"):
            assert private not in text
    # each decision counted by the worker that made it (a rebalance may redo a few: not fewer)
    assert total >= decided


def test_worker_logs_are_json_lines_without_person_names(cluster: Cluster) -> None:
    for worker in cluster.workers:
        lines = [line for line in worker.log().splitlines() if line.startswith("{")]
        assert len(lines) > 10
        for line in lines:
            entry = json.loads(line)
            assert {"ts", "level", "logger", "msg"} <= entry.keys()
        assert "测试" not in worker.log()
        # R8's terminals are for analysts: no MAC or IP of the scenario's orders in any log.
        for terminal in ("00:1B:44:11:3A:80", "00:1b:44:11:3a:80", "10.8.0.1", "10.8.0.2"):
            assert terminal not in worker.log()


def test_reads_of_accounts_and_violations_need_a_token_and_the_register_does_not(
    cluster: Cluster,
) -> None:
    port = cluster.ports[0]
    for path in ("/api/accounts/A1", "/api/violations", f"/api/check?account_id=A1&{ORDER_QUERY}"):
        assert http(port, path, token=None)[0] == 401, path
        assert http(port, path, token="not-a-token")[0] == 403, path  # noqa: S106
        assert http(port, path, token=ANALYST_TOKEN)[0] == 200, path
    assert http(port, "/api/bans", token=None)[0] == 200
    assert http(port, "/api/openapi.json", token=None)[0] == 200


def test_confirming_a_suspicion_records_the_analyst_and_blocks_the_next_order(
    cluster: Cluster,
) -> None:
    vid = "suspected_proxy_trading:NX1:PX:2024-05-14"
    port = cluster.ports[1]
    status, page = http(port, "/api/violations?kind=suspected_proxy_trading", token=ANALYST_TOKEN)
    assert status == 200, page
    assert vid in {e["violation"]["violation_id"] for e in page["items"]}
    status, entry = http(port, f"/api/violations/{vid}", token=ANALYST_TOKEN)
    assert status == 200, entry
    assert entry["violation"]["person_id"] == "PX"
    claim = json.dumps({"note": "same device, same hours", "by": "somebody-else"}).encode()
    not_one = "/api/violations/blocked_attempt:O-02/confirm"
    assert http(port, not_one, method="POST", body=claim, token=ANALYST_TOKEN)[0] == 409
    path = f"/api/violations/{vid}/confirm"
    status, answer = http(port, path, method="POST", body=claim, token=ANALYST_TOKEN)
    assert status == 202, answer
    assert (answer["status"], answer["by"]) == ("confirmed", ANALYST)
    links = asyncio.run(read_all(cluster.bootstrap, f"{cluster.prefix}accounts"))
    confirmed = [v for k, v in links if k == "NX1" and v.get("confirmed_by")]
    assert confirmed == [
        {
            "account_id": "NX1", "person_id": "PX", "kind": "controlled", "reference": vid,
            "revoked": False, "confirmed_by": ANALYST,
        }
    ]  # fmt: skip
    # The next order of NX1 is decided under PX's ban, through the running workers.
    eventually(
        lambda: http(port, "/api/accounts/NX1?at=2024-06-25")[1].get("controllers") or None,
        what="the controlled link in the account view",
    )
    status, check = http(
        port, f"/api/check?account_id=NX1&{ORDER_QUERY.replace('2024-05-13', '2024-06-25')}"
    )
    assert status == 200, check
    assert check["decision"]["verdict"] == "block"
    assert check["decision"]["person_id"] == "PX"
    assert "controlled by PX" in check["decision"]["reason"]
    assert vid in check["decision"]["reason"]


def test_an_analyst_token_removed_from_the_file_is_refused_without_a_restart(
    cluster: Cluster,
) -> None:
    tokens = Path(cluster.envs[0]["MARKETBAN_API_TOKENS_FILE"])
    port = cluster.ports[0]
    assert http(port, "/api/violations", token=ANALYST_TOKEN)[0] == 200
    kept = tokens.read_text(encoding="utf-8")
    try:
        tokens.write_text("# li.wei left the desk\n", encoding="utf-8")
        assert http(port, "/api/violations", token=ANALYST_TOKEN)[0] == 403
        path = "/api/violations/suspected_proxy_trading:NX1:PX:2024-05-14/dismiss"
        assert http(port, path, method="POST", body=b"{}", token=ANALYST_TOKEN)[0] == 403
    finally:
        tokens.write_text(kept, encoding="utf-8")
