"""``marketban audit``: what the processor wrote, checked against its input and against replay.

Pure: records in, a report out; the Kafka reading is ``marketban.adapters.audit_reader``. The
input is replayed through a fresh engine in the order the records were produced, and what the
processor wrote is compared with what replay gives, output by output:

- a decision is identified by its order id, a violation by its violation id, a rejection by the
  input it rejects (source topic, partition, offset);
- ``orders_without_decision``: replay decides the order, the processor wrote no decision;
- ``orders_with_several_decisions``: the processor wrote more decisions for an order id than
  replay (an order decided twice);
- ``violations_duplicated``: a violation id written more often than replay writes it;
- ``inputs_unaccounted``: an input replay rejects, without a rejection from the processor (an
  input neither applied nor rejected);
- ``differing``: any other difference — a decision, violation or rejection with other content,
  or one that replay does not give at all.

The processing-time stamps (``decided_at``, ``detected_at``) are not compared: replay has none.

The replay order is the stream's own (spec R6, ``marketban.decider.ordering``): per partition
number, one fresh engine takes that partition of every account-keyed topic and every partition of
``bans``, merged by record timestamp, topic order, partition and offset; records in the wrong
partition are rejected (and orders blocked) as the decider does; a ban's rejection and register
record count only in the task that owns the ban's partition. So the verdict does not depend on
which worker read what when. R8's internal topics are audited hop by hop: the terminal uses and
suspicions the tasks wrote are compared with replay's, and then replayed themselves, partition by
partition in offset order (the decider takes them outside the merge: their state is their own).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from marketban.decider.handling import handle_in_task
from marketban.decider.ordering import task_records
from marketban.domain.engine import INTERNAL_OUTPUTS, ROUTED, Engine, Source
from marketban.domain.fastpath import json_bytes

PROBLEMS: Final = (
    "orders_without_decision",
    "orders_with_several_decisions",
    "violations_duplicated",
    "inputs_unaccounted",
    "differing",
)
_STAMPS: Final = {
    "decisions": "decided_at",
    "violations": "detected_at",
    "proxy-suspicions": "detected_at",
}
_EXAMPLES: Final = 10


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the audit needs it; ``topic`` is the spec's name, without the prefix."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int = 0
    key_bytes: bytes | None = None  # the key as produced (the partition check hashes it)


@dataclass
class Report:
    """Counts of each problem, in total and per input partition, with a few examples of each."""

    tasks: int
    inputs: Counter[str] = field(default_factory=Counter)
    outputs: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    partitions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not any(self.problems.values())

    def add(self, problem: str, where: str, example: str) -> None:
        """Count one problem found at ``where`` (an input partition)."""
        self.problems[problem] += 1
        self.partitions[where][problem] += 1
        if len(self.examples[problem]) < _EXAMPLES:
            self.examples[problem].append(f"{where}: {example}")

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; every problem appears, also with 0."""
        return {
            "ok": self.ok,
            "tasks": self.tasks,
            "inputs": dict(sorted(self.inputs.items())),
            "outputs": dict(sorted(self.outputs.items())),
            "problems": {p: self.problems[p] for p in PROBLEMS},
            "partitions": {
                w: {p: c[p] for p in PROBLEMS if c[p]} for w, c in sorted(self.partitions.items())
            },
            "examples": {p: self.examples[p] for p in PROBLEMS if self.examples[p]},
        }


# An output's identity, and its content without the processing-time stamp.
_Identity = tuple[str, str]


def _identity(topic: str, value: dict[str, Any]) -> _Identity:
    if topic == "decisions":
        return topic, str(value.get("order_id"))
    if topic == "violations":
        return topic, str(value.get("violation_id"))
    if topic == "terminal-uses":
        return topic, f"use by order {value.get('order_id')}"
    if topic == "proxy-suspicions":
        # Two terminals may raise one suspicion; the detail (which names the terminal) tells
        # them apart without the report showing a MAC.
        digest = hashlib.sha256(str(value.get("detail")).encode()).hexdigest()[:12]
        return topic, f"{value.get('violation_id')} #{digest}"
    where = f"{value.get('source_topic')}[{value.get('partition')}]@{value.get('offset')}"
    return topic, where


def _content(topic: str, value: dict[str, Any]) -> bytes:
    stamp = _STAMPS.get(topic)
    if stamp is not None:
        value = {k: v for k, v in value.items() if k != stamp}
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def audit(
    new_engine: Callable[[], Engine],
    prefix: str,
    partitions: int,
    inputs: Sequence[Record],
    outputs: Sequence[Record],
) -> Report:
    """Replay ``inputs`` task by task through fresh engines and compare with ``outputs``."""
    report = Report(partitions)
    expected: dict[_Identity, list[bytes]] = defaultdict(list)
    actual: dict[_Identity, list[bytes]] = defaultdict(list)
    where: dict[_Identity, str] = {}
    for r in inputs:
        report.inputs[r.topic] += 1
    # R8's internal topics are both: what the account tasks wrote (compared with replay) and
    # what the terminal tasks read (replayed in their offset order, as the decider takes them).
    internal = sorted(
        (r for r in inputs if r.topic in ROUTED), key=lambda r: (r.topic, r.partition, r.offset)
    )
    merged = [r for r in inputs if r.topic not in ROUTED]
    for task in range(partitions):
        engine = new_engine()
        side = [r for r in internal if r.partition == task]
        for r in [*task_records(merged, task), *side]:
            source = Source(topic=f"{prefix}{r.topic}", partition=r.partition, offset=r.offset)
            caused = handle_in_task(
                engine, task, partitions, r.topic, r.key, r.key_bytes, r.value, source, None
            )
            for topic, _key, value in caused:
                if topic in INTERNAL_OUTPUTS and topic not in ROUTED:
                    continue
                data = orjson.loads(json_bytes(value))
                ident = _identity(topic, data)
                expected[ident].append(_content(topic, data))
                where.setdefault(ident, f"{r.topic}[{r.partition}]")
    for r in [*outputs, *internal]:
        report.outputs[r.topic] += 1
        try:
            data = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            data = None
        # A task sends its batch's terminal uses for one partition as one array.
        items = data if r.topic == "terminal-uses" and isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict):
                report.add(
                    "differing", f"{r.topic}[{r.partition}]", f"@{r.offset} is not a JSON object"
                )
                continue
            ident = _identity(r.topic, item)
            actual[ident].append(_content(r.topic, item))
            where.setdefault(ident, f"{r.topic}[{r.partition}]")
    for ident in expected.keys() | actual.keys():
        _compare(report, ident, where[ident], expected.get(ident, []), actual.get(ident, []))
    return report


# The problem, and its wording, when replay gives an output the processor did not write ...
_MISSING: Final = {
    "decisions": ("orders_without_decision", "order {name} has no decision"),
    "rejected": ("inputs_unaccounted", "input {name} is neither applied nor rejected"),
    "violations": ("differing", "violation {name} was not emitted"),
    "terminal-uses": ("differing", "R8 record of the {name} was not written"),
    "proxy-suspicions": ("differing", "R8 suspicion {name} was not passed on"),
}
# ... and when the processor wrote it more often than replay does.
_REPEATED: Final = {
    "decisions": ("orders_with_several_decisions", "order {name} decided {n} times"),
    "violations": ("violations_duplicated", "violation {name} emitted {n} times"),
    "rejected": ("differing", "input {name} rejected {n} times"),
    "terminal-uses": ("differing", "R8 record of the {name} written {n} times"),
    "proxy-suspicions": ("violations_duplicated", "R8 suspicion {name} passed on {n} times"),
}


def _compare(
    report: Report, ident: _Identity, where: str, want: list[bytes], got: list[bytes]
) -> None:
    topic, name = ident
    if want and not got:
        problem, text = _MISSING[topic]
        report.add(problem, where, text.format(name=name))
    elif want and len(got) > len(want):
        problem, text = _REPEATED[topic]
        report.add(problem, where, text.format(name=name, n=len(got)))
    elif sorted(want) != sorted(got):
        theirs = got[0].decode() if got else "nothing"
        ours = want[0].decode() if want else "nothing"
        report.add("differing", where, f"{topic} {name}: {theirs} where replay gives {ours}")
