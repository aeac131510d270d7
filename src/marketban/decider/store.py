"""A task's state: a RocksDB store that holds only committed state, and the batches on top of it.

The engine reads and writes plain mappings (``StoreMap``). Within a batch, values are decoded
once and kept as objects; at the end of the batch only the keys written are encoded (``stage``),
and those bytes go to the task's changelog partition inside the batch's transaction. A staged
batch stays a layer on top of RocksDB, read by the batches after it, until its transaction has
committed (the next batch is handled while it commits); RocksDB is then written in one write
batch that also records the changelog offset it now holds (``committed``, oldest layer first).
The store is never ahead of the committed changelog, and a restart restores only the changelog
records after that offset (``marketban.decider.restore``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Final, Generic, TypeVar, cast

import msgspec
from msgspec import Struct
from pydantic import BaseModel
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

from marketban.domain.fastpath import json_bytes

M = TypeVar("M", bound=BaseModel | Struct)

#: Where the store keeps the next changelog offset it has not applied (not a state key).
OFFSET_KEY: Final = b"\x00changelog-offset"
#: The changelog record of a batch that wrote no state (a tombstone of a key never set): every
#: transaction of a task writes its changelog partition, so a transaction the cluster left open
#: shows there (``marketban.decider.forgotten``).
BATCH_MARK_KEY: Final = b"\x00batch"


#: RocksDB's default memtable is 64 MB, and a worker holds one store per task: with six tasks the
#: memtables alone could take 384 MB. Writes come in batches already; 8 MB memtables suffice.
_WRITE_BUFFER: Final = 8 * 1024 * 1024


#: Bits per key of each table file's Bloom filter. Most lookups on the order path miss (an
#: account nobody linked, a terminal seen for the first time); without a filter a miss reads a
#: data block of every level and L0 file its key range falls in (measured 8-54 us a miss on a
#: million-key store, 4-5 us with the filter).
_BLOOM_BITS: Final = 10
#: One block cache for all of a worker's stores (RocksDB's default is 8 MB per store).
_BLOCK_CACHE_BYTES: Final = 64 * 1024 * 1024
_cache: Cache | None = None


def _options() -> Options:
    global _cache  # noqa: PLW0603 - one cache per process, made on the first store's open
    if _cache is None:
        _cache = Cache(_BLOCK_CACHE_BYTES)
    table = BlockBasedOptions()
    table.set_bloom_filter(_BLOOM_BITS, False)  # noqa: FBT003 - rocksdict's (bits, block_based)
    table.set_block_cache(_cache)
    options = Options(raw_mode=True)
    options.set_write_buffer_size(_WRITE_BUFFER)
    options.set_max_write_buffer_number(2)
    options.set_block_based_table_factory(table)
    return options


def _open(path: Path) -> Rdict:
    """Open (or create) the store at ``path`` with our options.

    The options go in as the default column family's too: opening an existing store, rocksdict
    otherwise takes them from the store's OPTIONS file, which cannot hold the table factory
    (the Bloom filter and the block cache would be gone after the first restart).
    """
    options = _options()
    return Rdict(str(path), options, column_families={"default": options})


class TaskStore:
    """Committed state of one task in RocksDB, plus the writes of the batch being handled."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = _open(path)
        #: Encoded writes of each staged batch not yet in RocksDB (None deletes), oldest first.
        self._pending: list[dict[bytes, bytes | None]] = []
        self._maps: list[StoreMap[Any]] = []

    # ---- committed state ------------------------------------------------------------------------

    @property
    def changelog_offset(self) -> int:
        """The first changelog offset this store has not applied (0 for a new store)."""
        raw = self._db.get(OFFSET_KEY)
        return int(raw) if raw is not None else 0

    @property
    def staged(self) -> dict[bytes, bytes | None]:
        """The encoded writes of the latest staged batch not yet in RocksDB ({} if none)."""
        return self._pending[-1] if self._pending else {}

    def get(self, key: bytes) -> bytes | None:
        """The bytes of ``key``: staged by a batch still committing, else committed."""
        for layer in reversed(self._pending):
            if key in layer:
                return layer[key]
        value: bytes | None = self._db.get(key)
        return value

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """``get`` of each of ``keys``: one RocksDB multi-get (a third cheaper per key)."""
        # rocksdict's stub takes list[str | int | ...], not list[bytes] (list is invariant), and
        # returns Any | None; for a list of keys it returns a list, None where a key is missing.
        found = self._db.get(cast("list[Any]", keys))
        values = cast("list[bytes | None]", found)
        for layer in self._pending:  # oldest first: a later batch's write wins
            values = [layer.get(k, v) for k, v in zip(keys, values, strict=True)]
        return values

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every committed key with ``prefix`` and its value, in key order."""
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                break
            yield key, value

    def apply(self, changes: list[tuple[bytes, bytes | None]], next_offset: int) -> None:
        """Write changelog records (restore), with the offset, atomically."""
        self._write(changes, next_offset)
        for store_map in self._maps:
            store_map.forget_keys()

    def _write(self, changes: list[tuple[bytes, bytes | None]], next_offset: int) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(OFFSET_KEY, str(next_offset).encode())
        self._db.write(batch)

    def wipe(self) -> None:
        """Forget everything (a store that cannot be trusted is rebuilt from the changelog)."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = _open(self.path)
        self.discard()
        for store_map in self._maps:
            store_map.forget_keys()

    def estimated_keys(self) -> int:
        """RocksDB's estimate of the keys it holds (counting them would read them all)."""
        return int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def close(self) -> None:
        """Close RocksDB (the task is revoked or the worker stops)."""
        self._db.close()

    # ---- the batch ------------------------------------------------------------------------------

    def mapping(self, prefix: str, model: type[M], *, sparse: bool = False) -> StoreMap[M]:
        """A mapping of ``prefix``-ed keys to ``model`` values for the engine.

        ``sparse``: few keys, looked up for nearly every record (an account's controllers):
        the map keeps its keys in memory and answers a miss without asking RocksDB.
        """
        store_map = StoreMap(self, prefix.encode(), model, sparse=sparse)
        self._maps.append(store_map)
        return store_map

    def stage(self) -> dict[bytes, bytes | None]:
        """Encode what the batch wrote (for the changelog, and once committed for RocksDB).

        The next batch starts: it reads these bytes until ``committed`` takes them.
        """
        layer: dict[bytes, bytes | None] = {}
        for store_map in self._maps:
            store_map.encode_into(layer)
        self._pending.append(layer)
        return layer

    def discard(self) -> None:
        """Drop every batch not committed: objects (the engine may have changed them), bytes."""
        self._pending = []
        for store_map in self._maps:
            store_map.clear_batch()

    def committed(self, next_offset: int) -> None:
        """The oldest staged batch's transaction committed: make it the store's state."""
        layer = self._pending[0]
        self._write(list(layer.items()), next_offset)
        del self._pending[0]
        for store_map in self._maps:
            store_map.took_batch()


class StoreMap(MutableMapping[str, M], Generic[M]):
    """The engine's view of one kind of state: decoded once per batch, encoded once per batch."""

    def __init__(
        self, store: TaskStore, prefix: bytes, model: type[M], *, sparse: bool = False
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._sparse = sparse
        #: A sparse map's committed keys (None: not read yet, or the store changed under it).
        self._keys: set[str] | None = None
        #: Per staged batch not yet committed (oldest first), the keys it wrote (True) or
        #: deleted (False): what a sparse map's ``_keys`` takes on when it commits.
        self._written: list[dict[str, bool]] = []
        self._decode: Callable[[bytes], M] = (
            msgspec.json.Decoder(model).decode
            if issubclass(model, Struct)
            else model.model_validate_json
        )
        self._objects: dict[str, M | None] = {}
        self._dirty: set[str] = set()
        #: Values written as bytes in this batch (``put_encoded``), decoded only if read.
        self._raw: dict[str, bytes] = {}
        #: Values read ahead (``prefetch``), decoded only if read: None where the key is absent.
        self._fetched: dict[str, bytes | None] = {}

    def get(self, key: str, default: Any = None) -> Any:  # noqa: ANN401 - Mapping's signature
        """The value (decoded at most once per batch), or ``default``."""
        try:
            value = self._objects[key]
        except KeyError:
            if self._sparse and not self._may_hold(key):
                return default
            raw = self._raw.get(key)
            if raw is None:
                fetched = self._fetched
                raw = (
                    fetched.pop(key)
                    if key in fetched
                    else self._store.get(self._prefix + key.encode())
                )
            value = None if raw is None else self._decode(raw)
            self._objects[key] = value
        return default if value is None else value

    def prefetch(self, keys: list[str]) -> None:
        """Read the values of ``keys`` this batch has not read yet with one multi-get.

        Decoded when read: a key read ahead that the batch does not use costs no decoding.
        """
        objects, fetched, raw_written = self._objects, self._fetched, self._raw
        wanted = [
            k
            for k in dict.fromkeys(keys)
            if k not in objects and k not in fetched and k not in raw_written
        ]
        if not wanted:
            return
        prefix = self._prefix
        raws = self._store.get_many([prefix + k.encode() for k in wanted])
        fetched.update(zip(wanted, raws, strict=True))

    def __getitem__(self, key: str) -> M:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        result: M = value
        return result

    def __setitem__(self, key: str, value: M) -> None:
        self._objects[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        self._objects[key] = None
        self._dirty.add(key)

    def put_encoded(self, key: str, raw: bytes) -> None:
        """Write a value already encoded (by another task's engine): kept as bytes."""
        self._objects.pop(key, None)
        self._dirty.discard(key)
        self._raw[key] = raw

    def __iter__(self) -> Iterator[str]:
        cut = len(self._prefix)
        return (k[cut:].decode() for k, _ in self._store.scan(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self._store.scan(self._prefix))

    def encode_into(self, staged: dict[bytes, bytes | None]) -> None:
        """Add the encoded bytes of every key written in this batch; the next batch starts."""
        written: dict[str, bool] = {}
        for key, raw in self._raw.items():
            staged[self._prefix + key.encode()] = raw
            written[key] = True
        self._raw.clear()
        for key in self._dirty:
            value = self._objects[key]
            staged[self._prefix + key.encode()] = None if value is None else json_bytes(value)
            written[key] = value is not None
        self._dirty.clear()
        # The next batch decodes afresh from the staged bytes: objects stay one batch's.
        self._objects.clear()
        self._fetched.clear()
        if self._sparse:
            self._written.append(written)

    def clear_batch(self) -> None:
        """Forget every batch not committed: decoded objects, writes, staged keys."""
        self._objects.clear()
        self._fetched.clear()
        self._dirty.clear()
        self._raw.clear()
        self._written.clear()

    def took_batch(self) -> None:
        """The oldest staged batch is in RocksDB now: a sparse map's key set follows it."""
        if not self._sparse:
            return
        written = self._written.pop(0)
        if self._keys is not None:
            for key, present in written.items():
                if present:
                    self._keys.add(key)
                else:
                    self._keys.discard(key)

    def forget_keys(self) -> None:
        """The store was written from outside a batch (restore, wipe): read the keys again."""
        self._keys = None

    def _may_hold(self, key: str) -> bool:
        """Whether a staged batch or the committed state has ``key`` (a sparse map's miss test)."""
        for written in reversed(self._written):
            if key in written:
                return written[key]
        return key in self._committed_keys()

    def _committed_keys(self) -> set[str]:
        if self._keys is None:
            cut = len(self._prefix)
            self._keys = {k[cut:].decode() for k, _ in self._store.scan(self._prefix)}
        return self._keys
