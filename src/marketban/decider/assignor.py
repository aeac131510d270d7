"""Assigns tasks (partition numbers) to workers, and tells every worker who owns each task.

Every account-keyed input has N partitions; task p is partition p of all of them, so the unit of
assignment is the partition number. ``bans`` is given whole to every member (each task merges all
of it into its own order), and so is the decider's ticks topic: the classic group protocol lets
the leader assign a partition to several members.

Each member's join metadata carries its advertised web URL and the tasks it had; the leader keeps
tasks where they were when the balance allows (their stores are warm), spreads the rest, and
sends every member the whole map task -> URL in the assignment's user data. The API routes an
account's request to the owner of its task with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger(__name__)


class TaskAssignor(AbstractPartitionAssignor):  # type: ignore[misc] # aiokafka is untyped
    """Co-partitioned, sticky task assignment with the owners' URLs for everyone."""

    #: The group protocol's name is its version. Kafka refuses a member that has no protocol in
    #: common with the group (INCONSISTENT_GROUP_PROTOCOL), so a worker does not join a group of
    #: workers whose tasks keep their input offsets elsewhere: "marketban-tasks" kept them in the
    #: group, this one keeps them in the task's changelog (docs/operations.md, "Upgrading").
    name = "marketban-tasks-2"
    version = 0

    def __init__(self, url: str, shared: tuple[str, ...]) -> None:
        self.url = url
        #: The topics every member is given whole (bans, ticks).
        self.shared = shared
        #: Task number -> the advertised URL of the worker that owns it, as of the last assignment.
        self.owners: dict[int, str] = {}
        self.tasks: list[int] = []

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        """This member's subscription, URL and current tasks."""
        data = orjson.dumps({"url": self.url, "tasks": self.tasks})
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), data)

    def assign(
        self,
        cluster: Any,  # noqa: ANN401 - aiokafka's ClusterMetadata, untyped
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        """The leader's assignment: each task to one member, every member told all owners."""
        subscribed = sorted({t for m in members.values() for t in m.subscription})
        # Every member reads every partition of bans (each task merges all of it); the
        # account-keyed topics are split by task.
        shared = [t for t in subscribed if t in self.shared]
        topics = [t for t in subscribed if t not in shared]
        counts = {t: len(cluster.partitions_for_topic(t) or ()) for t in topics}
        n = min(counts.values(), default=0)
        if len(set(counts.values())) > 1:
            log.error("input topics differ in partition count %s: assigning %d tasks", counts, n)
        ids = sorted(members)
        info = {m: _user_data(members[m].user_data) for m in ids}
        cap = math.ceil(n / len(ids)) if ids else 0
        owned: dict[str, list[int]] = {m: [] for m in ids}
        owner: dict[int, str] = {}
        for m in ids:
            for task in info[m].get("tasks", []):
                keep = isinstance(task, int) and 0 <= task < n and task not in owner
                if keep and len(owned[m]) < cap:
                    owner[task] = m
                    owned[m].append(task)
        for task in range(n):
            if task not in owner:
                m = min(ids, key=lambda i: (len(owned[i]), i))
                owner[task] = m
                owned[m].append(task)
        urls = {task: str(info[m].get("url", "")) for task, m in owner.items()}
        data = orjson.dumps({"owners": {str(t): u for t, u in sorted(urls.items())}})
        return {
            m: ConsumerProtocolMemberAssignment(
                self.version,
                [
                    *((t, sorted(owned[m])) for t in topics),
                    *((t, sorted(cluster.partitions_for_topic(t) or ())) for t in shared),
                ],
                data,
            )
            for m in ids
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        """Remember this member's tasks and every task's owner."""
        data = _user_data(assignment.user_data)
        owners = data.get("owners", {})
        self.owners = (
            {int(t): str(u) for t, u in owners.items()} if isinstance(owners, dict) else {}
        )
        self.tasks = sorted(
            {tp.partition for tp in assignment.partitions() if tp.topic not in self.shared}
        )

    @classmethod
    def on_generation_assignment(cls, generation: int) -> None:
        """Nothing to do per generation."""


def _user_data(raw: bytes | None) -> dict[str, Any]:
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
