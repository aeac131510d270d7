"""A transaction the cluster forgot: its records sit in a task's partitions, no marker ends it.

Kafka's transaction coordinator can record a transaction as committed while markers that end it
were never written. Seen here with the single broker stopped (SIGTERM) just after a commit: the
coordinator's log held CompleteCommit, the partitions the transaction wrote (changelog,
decisions) held its records and no marker (``make chaos``, broker restart, 2 runs in 10).
Initialising the producer again does not end it: for the coordinator nothing is open. Each such
partition keeps it open until that producer id writes a marker there again: its next commit
commits them. A task reopened meanwhile restored its store without that batch's changelog
records (its input offsets among them), decided the batch again, and both decisions became
visible once the producer committed again.

A task opening settles what is open there as committed, before it restores its store, when the
worker saw the first of it commit: its store took the records at the last stable offset (a store
takes a batch only once its commit returned). Otherwise the outcome the coordinator recorded
cannot be told from here (a commit whose answer was lost, or an abort whose markers were skipped
the same way), and it is left as it is, with an ERROR (docs/operations.md, a hanging
transaction). A later transaction open behind the first is one whose commit failed at the
client: the task opening initialised its producers only once every partition it touches had a
leader (``wait_for_leaders``), so the abort that initialising sends is written everywhere, and
one still open was a commit the coordinator recorded, its markers skipped with the first's.

Its changelog partition is written by its own producers alone, and by every one of its
transactions (``store.BATCH_MARK_KEY``), so a last stable offset short of the end there, once
its producers are initialised (which ends every transaction the coordinator knows of), is such a
transaction. Each producer then commits one transaction holding a tombstone of that reserved key
in the changelog: the marker of the producer that owns the forgotten transaction commits its
records in the changelog, its input offsets with them, so the batch is neither lost nor decided
again. Its records in output partitions stay open until that
producer next writes there (the next batch on it, usually): read_committed readers of such a
partition wait until then. Writing there now would put a record every reader sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from marketban.decider.restore import Ends
from marketban.decider.store import BATCH_MARK_KEY

log = logging.getLogger(__name__)


class LeaderlessError(RuntimeError):
    """A partition the task touches had no leader for as long as the task waited."""


#: Kafka's own topics a transaction touches. Kafka creates each on first use (the first
#: group, the first transactional producer): one that does not exist yet holds nothing open.
KAFKA_INTERNAL = ("__consumer_offsets", "__transaction_state")

_UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION


async def wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: Iterable[str], within_s: float = 30.0
) -> None:
    """Return once every partition of ``topics`` and of Kafka's own has a leader.

    The coordinator skips the markers of a partition without a leader and still records the
    transaction as ended: a task initialising its producers before then could leave the abort
    of its last transaction half written. LeaderlessError after ``within_s``. Kafka's own
    topics are waited for only once they exist: on a new cluster ``__transaction_state`` is
    created by the first producer initialising, which is what the caller does next.
    """
    names = list(dict.fromkeys([*topics, *KAFKA_INTERNAL]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            described = await admin.describe_topics(names)
        except KafkaError:
            described = []
        missing = [
            f"{t.get('topic')}[{p.get('partition')}]"
            for t in described
            for p in t.get("partitions", [])
            if p.get("leader", -1) < 0
        ] + [
            str(t.get("topic"))
            for t in described
            if t.get("error_code")
            and not (t.get("error_code") == _UNKNOWN_TOPIC and t.get("topic") in KAFKA_INTERNAL)
        ]
        if described and not missing:
            return
        if loop.time() > deadline:
            shown = ", ".join(missing[:5]) or "no answer"
            raise LeaderlessError(f"partitions without a leader after {within_s:.0f}s: {shown}")
        await asyncio.sleep(0.2)


#: How long the markers of the settling commits may take to appear (a few ms on a quiet cluster).
_SETTLED_WITHIN_S = 10.0


class ForgottenTransactionError(RuntimeError):
    """Committing on every producer of the task left its changelog partition with one open."""


async def settle_forgotten(
    ends: Ends,
    producers: Iterable[AIOKafkaProducer],
    changelog: TopicPartition,
    *,
    taken: int,
) -> bool:
    """Commit a transaction left open in the task's changelog partition; whether it did.

    Call with the task's producers initialised, before the task restores its store.
    ``taken``: the first changelog offset the task's store has not applied.
    """
    stable, end = await ends.stable_and_end(changelog)
    if stable >= end:
        return False
    if taken <= stable:
        log.error(
            "task %d: a transaction is open in %s from offset %d (end %d) that this worker did "
            "not see commit: whether the coordinator committed or aborted it cannot be told "
            "here, so it is left open; if it is settled as committed later, its batch's orders "
            "are decided twice: run marketban audit (docs/operations.md, a hanging transaction)",
            changelog.partition, changelog, stable, end,
        )  # fmt: skip
        return False
    log.error(
        "task %d: a transaction the coordinator recorded as committed is open in %s from "
        "offset %d (end %d): settling it as committed (docs/operations.md, a hanging "
        "transaction)",
        changelog.partition, changelog, stable, end,
    )  # fmt: skip
    for producer in producers:
        await producer.begin_transaction()
        await producer.send_and_wait(changelog.topic, None, BATCH_MARK_KEY, changelog.partition)
        await producer.commit_transaction()
    stable, end = await ends.once_settled(changelog, _SETTLED_WITHIN_S)
    if stable < end:
        raise ForgottenTransactionError(
            f"task {changelog.partition}: {changelog} still has a transaction open from offset "
            f"{stable} (end {end}) after every producer of the task committed one; another "
            "producer writes this partition? (kafka-transactions.sh find-hanging)"
        )
    return True
