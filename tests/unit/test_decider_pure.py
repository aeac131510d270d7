"""The decider's pure parts: partition check, the store's batch discipline, the assignor."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from marketban.decider.assignor import TaskAssignor
from marketban.decider.partitioning import misplaced, murmur2, partition_of
from marketban.decider.store import TaskStore
from marketban.domain.models import AccountLink


@given(st.binary(max_size=64))
def test_murmur2_is_the_java_clients_hash(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


def test_a_record_outside_its_keys_partition_is_named_with_where_it_belongs_and_the_fix() -> None:
    right = partition_of(b"SB000010", 6)
    wrong = (right + 1) % 6
    assert misplaced("orders", b"SB000010", right, 6) is None
    error = misplaced("orders", b"SB000010", wrong, 6)
    assert error is not None
    assert f"belongs in partition {right}" in error
    assert "partitioner=murmur2_random" in error
    assert misplaced("bans", b"SB000010", wrong, 6) is None  # bans go to every task
    assert misplaced("orders", None, wrong, 6) is None  # the engine rejects a missing key


def test_the_store_takes_a_batch_only_when_it_is_committed(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t")
    links = store.mapping("l:", AccountLink)
    links["A1"] = AccountLink(account_id="A1", person_id="P1", kind="cash")
    assert links.get("A1") is not None  # the batch sees its own write
    staged = store.stage()
    assert list(staged) == [b"l:A1"]
    store.discard()  # the transaction failed
    assert links.get("A1") is None
    assert store.changelog_offset == 0
    links["A1"] = AccountLink(account_id="A1", person_id="P1", kind="cash")
    store.stage()
    store.committed(next_offset=17)
    store.close()
    again = TaskStore(tmp_path / "t")
    assert again.changelog_offset == 17
    assert again.mapping("l:", AccountLink)["A1"].person_id == "P1"


def test_an_object_the_engine_changed_is_encoded_once_per_batch(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t")
    links = store.mapping("l:", AccountLink)
    for person in ("P1", "P2", "P3"):
        links["A1"] = AccountLink(account_id="A1", person_id=person, kind="cash")
    staged = store.stage()
    assert list(staged) == [b"l:A1"]
    assert b'"person_id":"P3"' in (staged[b"l:A1"] or b"")


def _link(account: str, person: str) -> AccountLink:
    return AccountLink(account_id=account, person_id=person, kind="cash")


def test_a_sparse_map_answers_misses_from_its_keys_and_follows_commits_and_restores(
    tmp_path: Path,
) -> None:
    store = TaskStore(tmp_path / "t")
    links = store.mapping("l:", AccountLink, sparse=True)
    links["A1"] = _link("A1", "P1")
    store.stage()
    store.discard()  # a failed transaction: A1 must not be taken as a known key
    assert links.get("A1") is None
    links["A1"] = _link("A1", "P1")
    store.stage()
    store.committed(next_offset=1)
    assert links["A1"].person_id == "P1"  # known after the commit
    del links["A1"]
    store.stage()
    store.committed(next_offset=2)
    assert links.get("A1") is None
    # A restore writes the store directly: the map must see what it wrote.
    store.apply([(b"l:A2", orjson.dumps(_link("A2", "P2").model_dump(mode="json")))], 3)
    assert links["A2"].person_id == "P2"
    store.wipe()
    assert links.get("A2") is None


def test_prefetch_reads_committed_values_and_keeps_the_batchs_own_writes(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t")
    links = store.mapping("l:", AccountLink)
    links["A1"] = _link("A1", "P1")
    store.stage()
    store.committed(next_offset=1)
    links["A2"] = _link("A2", "P2")  # written in this batch, not committed
    links.prefetch(["A1", "A2", "A3", "A1"])
    assert links["A1"].person_id == "P1"
    assert links["A2"].person_id == "P2"
    assert links.get("A3") is None


def test_a_reopened_store_keeps_its_bloom_filter(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t")
    store.mapping("l:", AccountLink)["A1"] = _link("A1", "P1")
    store.stage()
    store.committed(next_offset=1)
    store.close()
    TaskStore(tmp_path / "t").close()
    latest = max((tmp_path / "t").glob("OPTIONS-*"), key=lambda f: int(f.name.split("-")[1]))
    assert "filter_policy=bloomfilter" in latest.read_text()


def _member(url: str, tasks: list[int]) -> ConsumerProtocolMemberMetadata:
    data = orjson.dumps({"url": url, "tasks": tasks})
    return ConsumerProtocolMemberMetadata(0, ["p.orders", "p.accounts", "p.bans"], data)


def test_the_assignor_keeps_tasks_where_they_were_and_tells_everyone_the_owners() -> None:
    cluster = SimpleNamespace(partitions_for_topic=lambda _t: set(range(6)))
    members = {"m1": _member("http://a:1", [0, 1, 2, 3, 4, 5]), "m2": _member("http://b:2", [])}
    result = TaskAssignor("http://a:1", ("p.bans",)).assign(cluster, members)
    one = result["m1"].partitions()
    two = result["m2"].partitions()
    tasks_one = {tp.partition for tp in one if tp.topic != "p.bans"}
    tasks_two = {tp.partition for tp in two if tp.topic != "p.bans"}
    assert tasks_one == {0, 1, 2}  # the warm stores stay
    assert tasks_two == {3, 4, 5}
    # co-partitioned: a task is the same partition number of every input topic
    assert {(tp.topic, tp.partition) for tp in one if tp.topic != "p.bans"} == {
        (t, p) for t in ("p.accounts", "p.orders") for p in tasks_one
    }
    # every member reads all of bans
    for got in (one, two):
        assert {tp.partition for tp in got if tp.topic == "p.bans"} == set(range(6))
    receiver = TaskAssignor("http://b:2", ("p.bans",))
    receiver.on_assignment(result["m2"])
    assert receiver.tasks == [3, 4, 5]
    assert receiver.owners == {
        0: "http://a:1",
        1: "http://a:1",
        2: "http://a:1",
        3: "http://b:2",
        4: "http://b:2",
        5: "http://b:2",
    }


def test_the_stored_ban_view_loads_a_person_from_the_store_and_matches_the_eager_view(
    tmp_path: Path,
) -> None:
    from marketban.decider.banview import PersonDecisions, StoredBanView  # noqa: PLC0415
    from marketban.domain.bans import BanRecord  # noqa: PLC0415
    from marketban.domain.engine import Engine, State  # noqa: PLC0415
    from tests.unit.helpers import CAL, ban, feed, link, order, verdicts  # noqa: PLC0415

    store = TaskStore(tmp_path / "t")
    bans = store.mapping("b:", BanRecord)
    state = State(bans=bans, persons=StoredBanView(bans, store.mapping("i:", PersonDecisions), CAL))
    lazy = Engine(CAL, state)
    eager = Engine(CAL)
    messages = (("bans", ban()), ("accounts", link()), ("orders", order("O1")))
    for engine in (lazy, eager):
        feed(engine, *messages)
    store.stage()
    store.committed(next_offset=3)
    # A fresh view over the committed store (a restarted task) decides the same.
    state2 = State(
        bans=store.mapping("b:", BanRecord),
        persons=StoredBanView(
            store.mapping("b:", BanRecord), store.mapping("i:", PersonDecisions), CAL
        ),
        links=store.mapping("l:", AccountLink),
    )
    state2.links["A1"] = AccountLink(account_id="A1", person_id="P1", kind="cash")
    again = Engine(CAL, state2)
    assert verdicts(feed(again, ("orders", order("O2")))) == {"O2": "block"}
    assert verdicts(feed(eager, ("orders", order("O2")))) == {"O2": "block"}


def _task(tmp_path: Path, idle_s: float = 60.0, counts_every_s: float = 1.0) -> Any:
    from aiokafka import TopicPartition  # noqa: PLC0415

    from marketban.decider.task import BanLog, Lane, Task, TaskConfig  # noqa: PLC0415
    from tests.unit.helpers import CAL  # noqa: PLC0415

    names = {"p.orders": "orders", "p.executions": "executions", "p.bans": "bans"}
    config = TaskConfig(
        partitions=1, changelog="p.c", batch_max=100,
        max_idle_s=idle_s, calendar=CAL, topics=names, counts_every_s=counts_every_s,
        outputs={"decisions": "p.decisions", "violations": "p.violations",
                 "rejected": "p.rejected", "ban-windows": "p.bw", "terminal-uses": "p.tu",
                 "decision-counts": "p.dc"},
    )  # fmt: skip
    lanes = [Lane(TopicPartition(t, 0), names[t]) for t in ("p.orders", "p.executions")]
    return Task(0, config, TaskStore(tmp_path / "t"), (), lanes, BanLog())


def _record(topic: str, offset: int, ts: int, value: bytes) -> Any:
    from aiokafka.structs import ConsumerRecord  # noqa: PLC0415

    return ConsumerRecord(topic, 0, offset, ts, 1, b"A1", value, None, 2, len(value), [])


def test_a_task_takes_records_in_timestamp_order_across_its_partitions(tmp_path: Path) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    task = _task(tmp_path)
    orders, executions = task.lanes
    orders.add([_record("p.orders", 0, 20, orjson.dumps(order("O2")))], fetched_ms=100)
    executions.add([_record("p.executions", 0, 10, b"{broken")], fetched_ms=100)
    task.bans.confirmed_ms[0] = 101  # bans seen empty after both were fetched
    # and both partitions seen at their ends since: taking one's record leaves the other free
    orders.confirmed_ms = executions.confirmed_ms = 101
    assert task.collect() == 2
    topics = [topic for topic, _p, _k, _v in task._sends]
    # the broken execution (timestamp 10) is rejected before the order (20) is decided
    assert topics == ["p.rejected", "p.decisions"]


def test_a_sealed_batch_carries_one_record_of_its_decisions_by_verdict(tmp_path: Path) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    task = _task(tmp_path)
    orders, executions = task.lanes
    orders.add(
        [_record("p.orders", i, 20 + i, orjson.dumps(order(f"O{i}"))) for i in range(3)],
        fetched_ms=100,
    )
    task.bans.confirmed_ms[0] = orders.confirmed_ms = executions.confirmed_ms = 101
    assert task.collect() == 3
    task.producers = (None,)  # type: ignore[assignment] # seal only names the batch's producer
    batch = task.seal()
    counts = [(p, orjson.loads(v)) for t, p, _k, v in batch.sends if t == "p.dc"]
    assert counts == [(0, {"verdict:allow": 3})]  # nobody is linked to A1: three allowed
    assert task.seal().sends == []  # an empty batch counts nothing


def _decide(task: Any, first: int, n: int) -> Any:
    """Queue ``n`` orders from offset ``first`` on the task's orders lane, handle and seal them."""
    from tests.unit.helpers import order  # noqa: PLC0415

    orders, executions = task.lanes
    orders.add(
        [
            _record("p.orders", i, 20 + i, orjson.dumps(order(f"O{i}")))
            for i in range(first, first + n)
        ],
        fetched_ms=100,
    )
    task.bans.confirmed_ms[0] = orders.confirmed_ms = executions.confirmed_ms = 101
    assert task.collect() == n
    task.producers = (None,)
    return task.seal()


def _counts(batch: Any) -> list[dict[str, int]]:
    return [orjson.loads(v) for t, _p, _k, v in batch.sends if t == "p.dc"]


def _progress(batch: Any) -> dict[str, Any] | None:
    """The InputProgress the batch writes to its changelog, decoded (None: it writes none)."""
    found = [orjson.loads(v) for _t, _p, k, v in batch.changelog if k == b"o:inputs"]
    assert len(found) <= 1
    return found[0] if found else None


def test_counts_not_yet_due_are_committed_in_the_changelog_with_the_offsets(
    tmp_path: Path,
) -> None:
    task = _task(tmp_path, counts_every_s=3600)
    first = _decide(task, 0, 2)
    assert _counts(first) == [{"verdict:allow": 2}]  # the first is due at once
    assert _progress(first) == {"offsets": {"p.orders": 2}, "counts": {}}  # nothing left over
    later = _decide(task, 2, 3)
    assert _counts(later) == []  # the next record is an hour away
    assert _progress(later) == {"offsets": {"p.orders": 5}, "counts": {"verdict:allow": 3}}
    again = _decide(task, 5, 1)
    assert _progress(again) == {"offsets": {"p.orders": 6}, "counts": {"verdict:allow": 4}}
    assert again.offsets == {TopicPartition("p.orders", 0): 6}  # what the group is told


def test_a_reopened_task_goes_on_from_its_stores_offsets_and_sends_its_counts_once(
    tmp_path: Path,
) -> None:
    task = _task(tmp_path, counts_every_s=3600)
    _decide(task, 0, 1)
    _decide(task, 1, 2)  # two allowed, counted, not yet sent
    task.store.committed(next_offset=1)
    task.store.committed(next_offset=2)
    task.store.close()
    reopened = _task(tmp_path, counts_every_s=3600)  # the same store, as a restart finds it
    assert reopened.load()
    assert reopened.next_offsets == {TopicPartition("p.orders", 0): 3}
    # Due at once, with no new record: a batch of its own that clears them.
    assert reopened.counts_wait() == 0.0
    reopened.producers = (None,)
    alone = reopened.seal()
    assert _counts(alone) == [{"verdict:allow": 2}]
    assert _progress(alone) == {"offsets": {"p.orders": 3}, "counts": {}}
    assert alone.offsets == {}  # no record taken: the group has nothing new to hear
    assert reopened.counts_wait() is None
    assert _counts(_decide(reopened, 3, 1)) == []  # sent: not sent again


class _Committer:
    """The group's consumer: its first ``failures`` commits raise ``error``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.commits.append(dict(offsets))


def _commit_failed() -> Exception:
    from aiokafka.errors import CommitFailedError  # noqa: PLC0415

    return CommitFailedError("the group rebalanced")


@pytest.mark.parametrize(
    "error", [_commit_failed(), RuntimeError("a client bug")], ids=["rebalance", "unexpected"]
)
async def test_a_report_the_group_refused_is_tried_again_without_a_new_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    import asyncio  # noqa: PLC0415

    from marketban.decider import loop  # noqa: PLC0415
    from marketban.settings import Settings  # noqa: PLC0415
    from tests.unit.helpers import CAL  # noqa: PLC0415

    monkeypatch.setattr(loop, "_REPORT_RETRY_S", 0)
    decider = loop.Decider(Settings(), CAL)
    task = _task(tmp_path)
    task.next_offsets = {TopicPartition("p.orders", 0): 7}
    task.report_start()  # one commit landed; the input has ended: no other follows
    committer = _Committer(failures=3, error=error)
    decider.tasks = {0: task}
    decider._consumer = committer  # type: ignore[assignment]
    reports = asyncio.create_task(decider._reports())
    try:
        decider._committed.set()
        for _ in range(1000):
            if not task.unreported():
                break
            await asyncio.sleep(0)
        assert committer.commits == [{TopicPartition("p.orders", 0): 7}]
        assert committer.failures == 0
        decider._committed.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(committer.commits) == 1
    finally:
        reports.cancel()


def test_a_store_without_offsets_takes_the_counts_of_the_groups_offset_metadata(
    tmp_path: Path,
) -> None:
    task = _task(tmp_path, counts_every_s=3600)
    assert not task.load()  # nothing stored: the loop reads the group's offsets
    assert task.next_offsets == {}
    task.resume_counts('{"verdict:block":2}')
    assert task.counts_wait() == 0.0
    task.producers = (None,)
    assert _counts(task.seal()) == [{"verdict:block": 2}]
    garbled = _task(tmp_path / "other", counts_every_s=3600)
    garbled.resume_counts("written by someone else")  # ignored, with a warning
    assert garbled.counts_wait() is None


def test_with_counts_every_zero_each_batch_sends_its_own_counts(tmp_path: Path) -> None:
    task = _task(tmp_path, counts_every_s=0)
    assert [_counts(_decide(task, i, 1)) for i in range(3)] == [[{"verdict:allow": 1}]] * 3


def test_a_task_holds_a_record_until_every_empty_partition_is_seen_after_it(
    tmp_path: Path,
) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    task = _task(tmp_path)
    orders, executions = task.lanes
    orders.add([_record("p.orders", 0, 20, orjson.dumps(order("O2")))], fetched_ms=100)
    task.bans.confirmed_ms[0] = 101
    executions.confirmed_ms = 100  # seen empty in the same response: not enough
    assert task.collect() == 0
    assert task.idle_wait() is not None
    executions.confirmed_ms = 101  # a later response: nothing earlier can come from it
    assert task.collect() == 1
    assert task.idle_wait() is None


def test_a_held_record_goes_on_after_the_idle_limit(tmp_path: Path) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    task = _task(tmp_path, idle_s=0.0)
    orders, executions = task.lanes
    orders.add([_record("p.orders", 0, 20, orjson.dumps(order("O2")))], fetched_ms=100)
    executions.confirmed_ms = -1  # lagging and silent
    assert task.collect() == 1
    # Nothing is queued any more: nothing is held, so the task's loop sleeps until woken
    # (a held mark left behind would have it tick and spin on a zero timeout).
    assert not task.waiting()
    assert task.idle_wait() is None


def test_past_the_idle_limit_the_merge_goes_on_until_a_partition_confirms_again(
    tmp_path: Path,
) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    task = _task(tmp_path, idle_s=0.05)
    orders, executions = task.lanes
    task.bans.confirmed_ms[0] = 1_000
    executions.confirmed_ms = -1  # lagging and silent
    orders.add([_record("p.orders", 0, 20, orjson.dumps(order("O1")))], fetched_ms=100)
    assert task.collect() == 0  # held
    assert task.idle_wait() is not None
    time.sleep(0.06)
    assert task.collect() == 1  # the idle limit passed: it goes on
    assert task.idle_wait() is None
    orders.add([_record("p.orders", 1, 21, orjson.dumps(order("O2")))], fetched_ms=200)
    assert task.collect() == 1  # still lagging: no second wait (Kafka Streams' enforced processing)
    executions.confirmed_ms = 300  # the partition answers again: the next record waits its turn
    orders.add([_record("p.orders", 2, 22, orjson.dumps(order("O3")))], fetched_ms=250)
    assert task.collect() == 1
    executions.confirmed_ms = -1
    orders.add([_record("p.orders", 3, 23, orjson.dumps(order("O4")))], fetched_ms=400)
    assert task.collect() == 0  # a new wait, from the start


def test_a_ban_computed_by_one_task_and_taken_by_another_leaves_the_same_state_and_outputs(
    tmp_path: Path,
) -> None:
    from marketban.decider.banview import PersonDecisions, StoredBanView  # noqa: PLC0415
    from marketban.decider.handling import handle_in_task  # noqa: PLC0415
    from marketban.domain.bans import BanRecord  # noqa: PLC0415
    from marketban.domain.engine import Engine, Source, State  # noqa: PLC0415
    from tests.unit.helpers import CAL, ban, link, order, verdicts  # noqa: PLC0415

    def task_engine(name: str) -> tuple[TaskStore, Engine]:
        store = TaskStore(tmp_path / name)
        bans = store.mapping("b:", BanRecord)
        persons = StoredBanView(bans, store.mapping("i:", PersonDecisions), CAL)
        links = store.mapping("l:", AccountLink)
        return store, Engine(CAL, State(bans=bans, persons=persons, links=links))

    events = [
        ban("D1", "P1", version=2, action="amend", measures=[{"kind": "trading", "years": 3}]),
        ban("D1", "P1"),  # the issue after its held amend
        ban("D2", "P2", measures=[{"kind": "trading", "years": 9}]),  # invalid: > 5 years
        ban("D1", "P1"),  # a stale repeat
        ban("D3", "P1", version=1, action="revoke"),  # no effective_on: rejected
    ]
    computing, taking = task_engine("a"), task_engine("b")
    outcomes: dict[tuple[int, int], Any] = {}
    results = []
    for store, engine in (computing, taking):
        out = []
        for offset, event in enumerate(events):
            source = Source("p.bans", 0, offset)
            key = str(event["decision_id"])
            raw = orjson.dumps(event)
            args = ("bans", key, key.encode(), raw, source, None, outcomes)
            out += handle_in_task(engine, 0, 1, *args)
        store.stage()
        results.append((out, dict(store.staged)))
        store.committed(next_offset=len(events))
    (computed, computed_state), (taken, taken_state) = results
    assert len(outcomes) == len(events)
    assert [(t, k) for t, k, _ in taken] == [(t, k) for t, k, _ in computed]
    assert any(t == "rejected" for t, _, _ in computed)
    assert taken_state == computed_state  # the same bytes for the changelog and the store
    for store, engine in (computing, taking):
        engine.state.links["A1"] = AccountLink.model_validate(link())
        decided = engine.run("orders", "A1", order("O1"), Source("orders"))
        assert verdicts(decided) == {"O1": "block"}
        store.discard()


def test_ban_outcomes_are_dropped_once_every_task_is_past_them() -> None:
    from marketban.decider.task import BanLog  # noqa: PLC0415

    log = BanLog()
    log.outcomes = dict.fromkeys([(0, 5), (1, 3), (0, 6)])  # type: ignore[arg-type]
    log.forget_outcomes([{0: 6, 1: 3}, {0: 9, 1: 9}])
    assert list(log.outcomes) == [(1, 3), (0, 6)]  # (0, 5) is behind both, (1, 3) not
    log.forget_outcomes([{0: 9, 1: 9}, {}])  # a task that has not read its positions yet
    assert list(log.outcomes) == [(1, 3), (0, 6)]
    log.forget_outcomes([{0: 9, 1: 9}])
    assert log.outcomes == {}


class _Producer:
    """Records the transactions it is given; fails its commit when told to."""

    def __init__(self, name: str, log: list[tuple[str, str]], *, fail: bool = False) -> None:
        self.name, self.log, self.fail, self.open = name, log, fail, False

    async def begin_transaction(self) -> None:
        assert not self.open, "a producer's second transaction before its first ended"
        self.open = True
        self.log.append(("open", self.name))

    def create_batch(self) -> Any:
        return SimpleNamespace(append=lambda **_: object())

    async def send_batch(self, _batch: Any, _topic: str, partition: int) -> Any:
        import asyncio  # noqa: PLC0415

        self.log.append(("send", self.name))
        fut = asyncio.get_running_loop().create_future()
        self.acknowledge(fut, SimpleNamespace(offset=partition))
        return fut

    def acknowledge(self, fut: Any, meta: Any) -> None:
        fut.set_result(meta)

    async def commit_transaction(self) -> None:
        if self.fail:
            raise RuntimeError("the cluster went away")
        self.open = False
        self.log.append(("commit", self.name))


async def test_a_tasks_transactions_take_turns_on_its_producers(
    tmp_path: Path,
) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    log: list[tuple[str, str]] = []
    task = _task(tmp_path)
    task.producers = (_Producer("a", log), _Producer("b", log))
    for i in range(3):
        task.lanes[0].add([_record("p.orders", i, 10 + i, orjson.dumps(order(f"O{i}")))], 100)
        task.lanes[0].confirmed_ms = task.lanes[1].confirmed_ms = task.bans.confirmed_ms[0] = 101
        assert task.collect() == 1
        await task.transact(task.seal())
    assert [e for e in log if e[0] != "send"] == [
        ("open", "a"), ("commit", "a"), ("open", "b"), ("commit", "b"),
        ("open", "a"), ("commit", "a"),
    ]  # fmt: skip


async def test_a_failed_commit_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    from tests.unit.helpers import order  # noqa: PLC0415

    task = _task(tmp_path)
    task.producers = (_Producer("a", [], fail=True), _Producer("b", []))
    task.engine.state.links["A9"] = _link("A9", "P9")  # a state write in the failing batch
    task.lanes[0].add([_record("p.orders", 0, 10, orjson.dumps(order("O0")))], 100)
    task.lanes[0].confirmed_ms = task.lanes[1].confirmed_ms = task.bans.confirmed_ms[0] = 101
    assert task.collect() == 1
    with pytest.raises(RuntimeError):
        await task.transact(task.seal())
    task.store.close()
    reopened = TaskStore(tmp_path / "t")  # what the task reopens from
    assert reopened.changelog_offset == 0
    assert list(reopened.scan(b"")) == []


def test_a_batch_staged_before_the_last_one_committed_reads_it_and_commits_after_it(
    tmp_path: Path,
) -> None:
    store = TaskStore(tmp_path / "t")
    links = store.mapping("l:", AccountLink, sparse=True)
    links["A1"] = _link("A1", "P1")
    store.stage()  # batch 1: its transaction is committing
    assert links["A1"].person_id == "P1"  # batch 2 reads batch 1's write (a sparse map too)
    links["A2"] = _link("A2", links["A1"].person_id)
    del links["A1"]
    store.stage()  # batch 2
    store.committed(next_offset=1)  # batch 1's transaction committed: only batch 1 is taken
    first = TaskStore(tmp_path / "t2")
    first.apply(list(store.scan(b"l:")), 0)
    assert [k for k, _ in first.scan(b"l:")] == [b"l:A1"]
    assert links.get("A1") is None  # batch 2's delete still shows over the committed state
    store.committed(next_offset=2)
    assert [k for k, _ in store.scan(b"l:")] == [b"l:A2"]
    assert links.get("A1") is None
    assert links["A2"].person_id == "P1"


async def _two_batches_in_flight(task: Any, first_producer: _Producer) -> Any:
    """Two one-order batches sealed and started, the second after the first (``first_producer``)."""
    from tests.unit.helpers import order  # noqa: PLC0415

    task.producers = (first_producer, _Producer("b", first_producer.log))
    batches = []
    for i in range(2):
        task.lanes[0].add([_record("p.orders", i, 10 + i, orjson.dumps(order(f"O{i}")))], 100)
        task.lanes[0].confirmed_ms = task.lanes[1].confirmed_ms = task.bans.confirmed_ms[0] = 101
        assert task.collect() == 1
        batches.append(task.seal())
    return task.start(batches[1], task.start(batches[0], None))


class _Undelivered(_Producer):
    """Fails its records the way aiokafka fails a batch that expired waiting for a leader."""

    def acknowledge(self, fut: Any, meta: Any) -> None:  # noqa: ARG002
        from aiokafka.errors import LeaderNotAvailableError  # noqa: PLC0415

        fut.set_exception(LeaderNotAvailableError())


async def test_a_batch_with_a_record_that_failed_is_never_committed(tmp_path: Path) -> None:
    from aiokafka.errors import LeaderNotAvailableError  # noqa: PLC0415

    from tests.unit.helpers import order  # noqa: PLC0415

    log: list[tuple[str, str]] = []
    task = _task(tmp_path)
    task.producers = (_Undelivered("a", log),)
    task.lanes[0].add([_record("p.orders", 0, 10, orjson.dumps(order("O0")))], 100)
    task.lanes[0].confirmed_ms = task.lanes[1].confirmed_ms = task.bans.confirmed_ms[0] = 101
    assert task.collect() == 1
    with pytest.raises(LeaderNotAvailableError):
        await task.start(task.seal(), None)
    assert ("send", "a") in log  # aiokafka would commit the changelog without the outputs
    assert ("commit", "a") not in log
    assert task.store.changelog_offset == 0  # the store did not take the batch


class _Holding(_Producer):
    """Holds one of its steps (its records' acknowledgements, its commit)."""

    def __init__(self, name: str, log: list[tuple[str, str]], held: str) -> None:
        import asyncio  # noqa: PLC0415

        super().__init__(name, log)
        self.held, self.release = held, asyncio.Event()
        self.acks: list[asyncio.Task[None]] = []

    async def _hold(self, step: str) -> None:
        if step == self.held:
            await self.release.wait()

    def acknowledge(self, fut: Any, meta: Any) -> None:
        import asyncio  # noqa: PLC0415

        async def later() -> None:
            await self._hold("acks")
            fut.set_result(meta)

        self.acks.append(asyncio.create_task(later()))

    async def commit_transaction(self) -> None:
        await self._hold("commit")
        await super().commit_transaction()


@pytest.mark.parametrize(
    ("held", "waits", "reached"),
    [
        # its records would land between the first one's
        pytest.param("acks", "send", "send", id="records-after-the-previous-ones-are-appended"),
        # sent and waiting: the batch before it has not committed
        pytest.param("commit", "commit", "send", id="commit-after-the-previous-one"),
    ],
)
async def test_a_batch_in_flight_takes_each_step_only_after_the_batch_before_it(
    tmp_path: Path, held: str, waits: str, reached: str
) -> None:
    import asyncio  # noqa: PLC0415
    import itertools  # noqa: PLC0415

    log: list[tuple[str, str]] = []
    first = _Holding("a", log, held)
    second = await _two_batches_in_flight(_task(tmp_path), first)
    await asyncio.sleep(0.05)
    assert (reached, "a") in log  # the first batch got as far as the step it is held before
    assert (waits, "b") not in log
    first.release.set()
    await second
    steps = [name for step, name in log if step == waits]
    assert [name for name, _ in itertools.groupby(steps)] == ["a", "b"]


# ---- a transaction left undecided in a task's changelog --------------------------------------


def test_a_changelog_short_of_its_end_twice_at_the_same_offset_while_idle_is_hanging() -> None:
    from marketban.decider.loop import hanging_changelogs  # noqa: PLC0415

    before = {0: (406, 120), 1: (300, 80)}  # where the last check found a changelog short
    now = {
        0: (406, 410, 120),  # short twice at 406, nothing handled between: hanging
        1: (300, 300, 80),  # at its end now: what was open has ended
        2: (500, 503, 9),  # short for the first time: not yet
    }
    assert hanging_changelogs(before, now) == {0: 406}


def test_a_changelog_that_moved_or_a_task_that_handled_records_is_not_hanging() -> None:
    from marketban.decider.loop import hanging_changelogs  # noqa: PLC0415

    assert hanging_changelogs({0: (406, 120)}, {0: (409, 412, 120)}) == {}  # it moved on
    assert hanging_changelogs({0: (406, 120)}, {0: (406, 410, 121)}) == {}  # it worked between
    assert hanging_changelogs({}, {0: (406, 410, 120)}) == {}  # one sighting is not enough


# ---- a reopening task's committed offsets ----------------------------------------------------


class _LoadingAdmin:
    """Answers OffsetFetch the way aiokafka's admin does while the coordinator loads: ``{}``."""

    def __init__(self, loading_replies: int, committed: dict[Any, Any]) -> None:
        self.loading_replies = loading_replies
        self.committed = committed
        self.asked = 0

    async def list_consumer_group_offsets(self, group: str, partitions: list[Any]) -> Any:  # noqa: ARG002
        self.asked += 1
        if self.asked <= self.loading_replies:
            return {}
        return {tp: self.committed[tp] for tp in partitions}


async def test_a_reply_without_the_partitions_asked_for_is_retried_not_read_as_nothing_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka.structs import OffsetAndMetadata, TopicPartition  # noqa: PLC0415

    from marketban.decider import loop  # noqa: PLC0415

    monkeypatch.setattr(loop, "_COMMITTED_RETRY_S", 0)
    tps = [TopicPartition("orders", 1), TopicPartition("executions", 1)]
    committed = {tps[0]: OffsetAndMetadata(57, "counts"), tps[1]: OffsetAndMetadata(-1, "")}
    admin = _LoadingAdmin(loading_replies=3, committed=committed)
    assert await loop.committed_offsets(admin, "g", tps) == committed  # type: ignore[arg-type]
    assert admin.asked == 4


async def test_a_coordinator_that_never_answers_with_the_partitions_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka.errors import CoordinatorNotAvailableError  # noqa: PLC0415
    from aiokafka.structs import TopicPartition  # noqa: PLC0415

    from marketban.decider import loop  # noqa: PLC0415

    monkeypatch.setattr(loop, "_COMMITTED_RETRY_S", 0)
    admin = _LoadingAdmin(loading_replies=10**6, committed={})
    with pytest.raises(CoordinatorNotAvailableError):
        await loop.committed_offsets(admin, "g", [TopicPartition("orders", 1)])  # type: ignore[arg-type]
    assert admin.asked == loop._COMMITTED_TRIES


def test_a_batch_that_wrote_no_state_still_writes_its_tasks_changelog(tmp_path: Path) -> None:
    """What lets a task opening see a transaction the coordinator forgot (decider.forgotten)."""
    from marketban.decider.store import BATCH_MARK_KEY  # noqa: PLC0415

    task = _task(tmp_path)
    task.producers = (_Producer("a", []),)
    batch = task.seal()
    assert batch.changelog == [("p.c", 0, BATCH_MARK_KEY, None)]


class _DescribingAdmin:
    """Answers describe_topics as a broker does; ``absent`` topics do not exist (error 3)."""

    def __init__(self, absent: set[str], leaderless: frozenset[str] = frozenset()) -> None:
        self.absent = absent
        self.leaderless = leaderless
        self.asked: list[list[str]] = []

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.asked.append(names)
        return [
            {"topic": n, "error_code": 3, "partitions": []}
            if n in self.absent
            else {
                "topic": n,
                "error_code": 0,
                "partitions": [{"partition": 0, "leader": -1 if n in self.leaderless else 1}],
            }
            for n in names
        ]


async def test_a_new_cluster_without_a_transaction_log_does_not_hold_a_task_opening() -> None:
    """__transaction_state exists only once a transactional producer initialised (a new broker)."""
    from marketban.decider.forgotten import wait_for_leaders  # noqa: PLC0415

    admin = _DescribingAdmin(absent={"__transaction_state"})
    await wait_for_leaders(admin, ["p.orders", "p.changelog"], within_s=0.0)  # type: ignore[arg-type]
    assert {"__consumer_offsets", "__transaction_state"} <= set(admin.asked[0])


async def test_a_missing_topic_of_ours_or_a_leaderless_internal_one_holds_a_task_opening() -> None:
    from marketban.decider.forgotten import LeaderlessError, wait_for_leaders  # noqa: PLC0415

    ours = _DescribingAdmin(absent={"p.changelog"})
    with pytest.raises(LeaderlessError, match=r"p\.changelog"):
        await wait_for_leaders(ours, ["p.changelog"], within_s=0.0)  # type: ignore[arg-type]
    with pytest.raises(LeaderlessError, match=r"__transaction_state\[0\]"):
        await wait_for_leaders(
            _DescribingAdmin(absent=set(), leaderless=frozenset({"__transaction_state"})),  # type: ignore[arg-type]
            ["p.changelog"],
            within_s=0.0,
        )


class _FailingFetches:
    """A consumer whose fetches fail (a codec it cannot read) while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = True
        self.fetches = 0

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        import asyncio  # noqa: PLC0415

        from aiokafka.errors import UnsupportedCodecError  # noqa: PLC0415

        self.fetches += 1
        await asyncio.sleep(0)
        if self.failing:
            raise UnsupportedCodecError("Libraries for snappy compression codec not found")
        return {}


async def test_fetches_that_keep_failing_make_the_worker_unready_and_log_an_error_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from marketban.decider import loop  # noqa: PLC0415
    from marketban.settings import Settings  # noqa: PLC0415
    from tests.unit.helpers import CAL  # noqa: PLC0415

    monkeypatch.setattr(loop, "_FETCH_RETRY_S", 0)
    monkeypatch.setattr(loop, "_FETCH_FAILING_S", 0.2)
    decider = loop.Decider(Settings(), CAL)
    consumer = _FailingFetches()
    decider._consumer = consumer  # type: ignore[assignment]
    assert decider.readiness()["fetching"]
    caplog.set_level(logging.INFO, logger=loop.__name__)
    fetch = asyncio.create_task(decider._fetch())
    try:
        for _ in range(1000):
            if consumer.fetches >= 3:
                break
            await asyncio.sleep(0)
        assert decider.readiness()["fetching"], "a few failed fetches are not yet a stall"
        await asyncio.sleep(0.3)
        assert not decider.readiness()["fetching"]
        stalled = consumer.fetches
        assert stalled > 10
        levels = [r.levelname for r in caplog.records if r.name == loop.__name__]
        assert levels == ["WARNING", "ERROR"], levels  # not one line per failed fetch
        assert "snappy" in caplog.records[-1].getMessage()
        consumer.failing = False
        for _ in range(1000):
            if consumer.fetches >= stalled + 2:
                break
            await asyncio.sleep(0)
        assert decider.readiness()["fetching"]
        assert "fetching again" in caplog.records[-1].getMessage()
    finally:
        fetch.cancel()
