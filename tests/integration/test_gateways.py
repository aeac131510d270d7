"""What gateways on other clients send, on the wire: here librdkafka, the C client under most
C/C++/Go/.NET gateways, configured as the README tells gateway authors (murmur2 partitioner).
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from confluent_kafka import Producer

from tests.integration.stream import banned_accounts, buy_order, cli, start_worker, worker_env

#: Every codec Kafka defines; a producer picks one per batch (``compression.type``).
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def test_orders_in_batches_of_every_kafka_compression_codec_are_decided(
    kafka_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    reference, accounts = banned_accounts(kafka_env, tmp_path, 5)
    env = worker_env(kafka_env, tmp_path / "data")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        cli(env, "feed", str(reference))
        topic = env["MARKETBAN_TOPIC_PREFIX"] + "orders"
        for codec in CODECS:
            producer = Producer(
                {
                    "bootstrap.servers": kafka_bootstrap,
                    "enable.idempotence": True,
                    "partitioner": "murmur2_random",
                    "compression.type": codec,
                    "linger.ms": 50,  # the orders of a codec in one compressed batch
                }
            )
            for i, account in enumerate(accounts):
                order = buy_order(f"{codec}-{i}", account)
                producer.produce(topic, key=account.encode(), value=orjson.dumps(order))
            assert producer.flush(30) == 0
        streamed = cli(env, "tail", "--idle", "3")
    finally:
        worker.stop()
    verdicts: dict[str, str] = {}
    for line in streamed.splitlines():
        rec = json.loads(line)
        if rec["topic"] == "decisions":
            verdicts[rec["value"]["order_id"]] = rec["value"]["verdict"]
    for codec in CODECS:
        mine = {o: v for o, v in verdicts.items() if o.startswith(f"{codec}-")}
        assert len(mine) == len(accounts), f"{codec}: {len(mine)} of {len(accounts)} decided"
        assert set(mine.values()) == {"block"}, f"{codec}: a banned account traded"
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
