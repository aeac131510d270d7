"""The highwater correction to faust-streaming (marketban.adapters.faust_fixes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from marketban.adapters.faust_fixes import (
    _highwaters,
    _on_recovery_completed,
    _resume_streams,
    discard_local_state,
)


class _Consumer:
    """aiokafka's consumer as recovery sees it: LSO known for fetched partitions only."""

    def __init__(self, lso: dict[str, int | None], ends: dict[str, int]) -> None:
        self.lso, self.ends = lso, ends
        self.asked: list[list[str]] = []

    def last_stable_offset(self, tp: str) -> int | None:
        return self.lso[tp]

    async def end_offsets(self, tps: list[str]) -> dict[str, int]:
        self.asked.append(tps)
        return {tp: self.ends[tp] for tp in tps}


def _thread(consumer: _Consumer, *, in_transaction: bool) -> Any:
    return SimpleNamespace(
        _ensure_consumer=lambda: consumer,
        consumer=SimpleNamespace(in_transaction=in_transaction),
    )


async def test_an_unknown_last_stable_offset_is_asked_of_the_broker() -> None:
    consumer = _Consumer({"a": 5, "b": None}, {"a": 99, "b": 27})
    got = await _highwaters(_thread(consumer, in_transaction=True), ["a", "b"])
    assert got == {"a": 5, "b": 27}  # never None: Faust would make that -1
    assert consumer.asked == [["b"]]


async def test_without_transactions_the_end_offsets_are_used() -> None:
    consumer = _Consumer({"a": None}, {"a": 12})
    assert await _highwaters(_thread(consumer, in_transaction=False), ["a"]) == {"a": 12}


class _Recorder:
    """A Faust Recovery and its app/consumer, reduced to recording the order of the calls."""

    def __init__(self, assignment: set[str]) -> None:
        self.calls: list[str] = []
        calls = self.calls

        class Consumer:
            def assignment(self) -> set[str]:
                return assignment

            async def perform_seek(self) -> None:
                calls.append("seek")

            def resume_partitions(self, tps: set[str]) -> None:
                calls.append(f"resume {sorted(tps)}")

            def resume_flow(self) -> None:
                calls.append("resume_flow")

        async def send() -> None:
            calls.append("rebalance_complete")

        async def maybe_start() -> None:
            calls.append("fetcher")

        self.app = SimpleNamespace(
            consumer=Consumer(),
            consumer_generation_id=1,
            conf=SimpleNamespace(broker_request_timeout=30),
            on_rebalance_complete=SimpleNamespace(send=send),
            flow_control=SimpleNamespace(resume=lambda: calls.append("flow_control")),
            _fetcher=SimpleNamespace(maybe_start=maybe_start),
            on_rebalance_end=lambda: calls.append("rebalance_end"),
            assignor=SimpleNamespace(assigned_standbys=set),
        )
        self.log = SimpleNamespace(info=lambda *_: None, warning=lambda *_: calls.append("again"))
        self.completed = SimpleNamespace(set=lambda: calls.append("completed"))
        self.tables = SimpleNamespace(
            values=list,
            on_actives_ready=lambda: None,
            on_standbys_ready=lambda: None,
        )
        self.actives_for_table = self.standbys_for_table = {}

    def _is_changelog_tp(self, tp: str) -> bool:
        return tp.endswith("-changelog")

    async def _wait(self, coro: Any, timeout: float) -> None:  # noqa: ASYNC109, ARG002 - Faust's
        await coro

    def _set_recovery_ended(self) -> None:
        self.calls.append("recovery_ended")


async def test_recovery_seeks_the_stream_partitions_before_it_resumes_them() -> None:
    for finish in (_resume_streams, _on_recovery_completed):
        recovery = _Recorder({"orders", "links-changelog"})
        await finish(recovery, generation_id=1)
        calls = [c for c in recovery.calls if c not in ("rebalance_complete", "recovery_ended")]
        # Resumed before the seek, the running fetcher hands the agent records from the old
        # positions, and the seek then leaves a hole in Faust's acked offsets: commits stop.
        assert calls[:2] == ["seek", "resume ['orders']"], finish
        assert calls.index("resume_flow") > calls.index("completed") > 1
        assert calls[-1] == "rebalance_end"


async def test_recovery_ends_without_resuming_when_a_new_rebalance_began() -> None:
    for finish in (_resume_streams, _on_recovery_completed):
        recovery = _Recorder({"orders"})
        await finish(recovery, generation_id=2)  # the consumer is at generation 1 already
        assert "seek" not in recovery.calls
        assert "again" in recovery.calls


def test_local_state_and_what_recovery_knew_of_it_are_dropped_together() -> None:
    resets: list[str] = []

    class Table:
        def __init__(self, name: str) -> None:
            self.name = name
            self.data = SimpleNamespace(data={"k": "v"})  # a memory store keeps its dict

        def reset_state(self) -> None:
            resets.append(self.name)

    tables = {"links": Table("links"), "accounts": Table("accounts")}
    buffer = ["changelog record read before the rebalance"]
    offsets = {"links-changelog-0": 5000}  # what Faust would resume reading from
    recovery = SimpleNamespace(
        tables=tables,
        buffers={tables["links"]: buffer},
        active_offsets=offsets,
        standby_offsets={"accounts-changelog-1": 70},
        active_highwaters={"links-changelog-0": 5200},
        standby_highwaters={"accounts-changelog-1": 90},
    )
    discard_local_state(recovery)
    assert sorted(resets) == ["accounts", "links"]
    assert all(t.data.data == {} for t in tables.values())
    # In place: Faust's changelog reader holds these very objects. An offset left behind would
    # make recovery resume there, into an empty store, and lose every record before it.
    assert buffer == []
    assert offsets == {}
    assert recovery.standby_offsets == recovery.active_highwaters == {}
    assert recovery.standby_highwaters == {}


def test_apply_installs_the_corrections_on_faust() -> None:
    from faust.tables.recovery import Recovery  # noqa: PLC0415
    from faust.transport.consumer import TransactionManager  # noqa: PLC0415
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread  # noqa: PLC0415

    from marketban.adapters import faust_fixes  # noqa: PLC0415

    faust_fixes.apply()
    faust_fixes.apply()  # idempotent
    assert Recovery.on_rebalance is faust_fixes._on_rebalance
    assert Recovery.on_recovery_completed is _on_recovery_completed
    assert Recovery._resume_streams is _resume_streams
    assert AIOKafkaConsumerThread._highwaters is _highwaters
    assert TransactionManager.commit is faust_fixes._commit
    assert TransactionManager.on_partitions_revoked is faust_fixes._abort_open_transactions
    assert faust_fixes._faust_on_rebalance is not faust_fixes._on_rebalance


async def test_a_commit_waits_for_the_batch_that_holds_the_barrier(monkeypatch: Any) -> None:
    import asyncio  # noqa: PLC0415

    from marketban.adapters import faust_fixes  # noqa: PLC0415

    committed: list[str] = []

    async def faust_commit(_self: Any, offsets: Any, _start: bool) -> bool:
        committed.append(offsets)
        return True

    monkeypatch.setattr(faust_fixes, "_faust_commit", faust_commit)
    barrier = asyncio.Lock()
    manager = SimpleNamespace(app=SimpleNamespace(**{faust_fixes.COMMIT_BARRIER: barrier}))
    async with barrier:  # a batch is being handled: outputs sent, table writes still buffered
        commit = asyncio.create_task(faust_fixes._commit(manager, "offsets"))
        await asyncio.sleep(0.05)
        assert committed == []  # the commit timer fired, and waits for the batch
    assert await commit is True
    assert committed == ["offsets"]
    # Without a barrier (another Faust app in the process) commits go straight through.
    bare = SimpleNamespace(app=SimpleNamespace())
    assert await faust_fixes._commit(bare, "more") is True
    assert committed == ["offsets", "more"]


async def test_transactions_still_open_after_the_revocation_commit_are_aborted(
    monkeypatch: Any,
) -> None:
    import asyncio  # noqa: PLC0415

    from marketban.adapters import faust_fixes  # noqa: PLC0415

    calls: list[str] = []

    async def faust_revoked(_self: Any, _revoked: Any) -> None:
        calls.append("faust: flush")

    monkeypatch.setattr(faust_fixes, "_faust_on_partitions_revoked", faust_revoked)

    def transactional(*, open_: bool) -> Any:
        return SimpleNamespace(_txn_manager=SimpleNamespace(is_in_transaction=lambda: open_))

    async def abort_transaction(tid: str) -> None:
        calls.append(f"abort {tid}")

    producer = SimpleNamespace(
        _transaction_producers={
            "app-1-0": transactional(open_=True),  # kept across the rebalance, uncommitted sends
            "app-1-1": transactional(open_=False),  # committed and ended by Faust
        },
        abort_transaction=abort_transaction,
    )
    manager = SimpleNamespace(
        producer=producer, app=SimpleNamespace(**{faust_fixes.COMMIT_BARRIER: asyncio.Lock()})
    )
    await faust_fixes._abort_open_transactions(manager, {"orders-0"})
    assert calls == ["faust: flush", "abort app-1-0"]
