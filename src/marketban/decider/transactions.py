"""A task's transactional producers, and how long one waits while its last transaction finishes.

A transaction begun right after the previous commit is answered CONCURRENT_TRANSACTIONS until the
coordinator has written the previous one's markers (KAFKA-5477), which takes a few milliseconds.
aiokafka then waits a fixed ``aiokafka.producer.sender.BACKOFF_OVERRIDE`` (20 ms) before it
retries, on every back-to-back transaction: with one transaction a batch that is most of the
decision latency. franz-go made the same wait configurable (twmb/franz-go#133); aiokafka has no
option for it, so this module sets that public module constant, in this one place, for the
decider and for the benchmark's passthrough it is compared with.
"""

from __future__ import annotations

from typing import Final

import aiokafka.producer.sender

#: The producers' ``retry_backoff_ms`` (aiokafka's default is 100).
RETRY_BACKOFF_MS: Final = 5
#: The wait after CONCURRENT_TRANSACTIONS. Measured on this machine's broker, back-to-back
#: transactions of one producer took p50 26 ms with aiokafka's 20, 10 ms with 5, 4-6 ms with 1-2.
CONCURRENT_TRANSACTIONS_BACKOFF_MS: Final = 2


def tune_transaction_retries() -> None:
    """Retry a CONCURRENT_TRANSACTIONS answer after a couple of milliseconds instead of 20."""
    aiokafka.producer.sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_BACKOFF_MS / 1000


#: Transactional producers per task, taking turns batch by batch. A producer's commit returns once
#: the coordinator has decided the transaction, before it has written the markers into every
#: partition the transaction touched; until it has, that producer's next transaction is refused
#: with CONCURRENT_TRANSACTIONS (measured inside a loaded worker: 30 ms from a batch's last send
#: to its offsets in the transaction, most of a task's cycle). Under a backlog a batch is handled,
#: sent and its offsets added while the batch before it commits (``Decider._run``), so two are in
#: flight and a third producer gives each one's markers the time of the next batch. Batches still
#: commit in their order (``Task.transact``), a producer never has two transactions open, a
#: batch's records are sent once the previous batch's are appended (partitions keep the batches'
#: order) and its offsets reach the group coordinator after the previous batch's: of two
#: producers' offset commits it keeps the one later in its log.
PRODUCERS_PER_TASK: Final = 3


def task_transactional_id(app_id: str, task: int, turn: int) -> str:
    """The transactional id of task ``task``'s producer number ``turn``: stable across restarts."""
    return f"{app_id}-task-{task}" if turn == 0 else f"{app_id}-task-{task}-{turn}"
