"""A tiny Faust app for the smoke test: one agent updates a Table, another answers from it.

Run: python table_app.py worker --web-port N   (broker and prefix from MARKETBAN_* variables)
"""

from __future__ import annotations

import os

import faust

prefix = os.environ["MARKETBAN_TOPIC_PREFIX"]
app = faust.App(
    f"{prefix}smoke-app",
    broker=f"kafka://{os.environ['MARKETBAN_KAFKA_BOOTSTRAP']}",
    store="memory://",  # nothing on disk: a restarted worker can only recover from the changelog
    datadir=os.environ["MARKETBAN_DATA_DIR"],  # Faust's default is a directory in the cwd
    processing_guarantee="exactly_once",
    topic_partitions=2,
    web_bind="127.0.0.1",
)
adds = app.topic(f"{prefix}adds", key_type=bytes, value_type=bytes, value_serializer="raw")
queries = app.topic(f"{prefix}queries", key_type=bytes, value_type=bytes, value_serializer="raw")
answers = app.topic(f"{prefix}answers", key_type=bytes, value_type=bytes, value_serializer="raw")
totals = app.Table("totals", default=int, key_type=str, value_type=int, partitions=2)


@app.agent(adds)
async def add(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        totals[key.decode()] += int(value)


@app.agent(queries)
async def answer(stream):  # type: ignore[no-untyped-def]
    async for key, query_id in stream.items():
        total = totals[key.decode()]
        await answers.send(key=key, value=f"{query_id.decode()}:{total}".encode())


if __name__ == "__main__":
    app.main()
