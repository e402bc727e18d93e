"""The waybill pool: numbers from files and ranges, each taken at most once even by many threads
at once (SQLite and PostgreSQL), a clear refusal when empty, refilling; the in-memory fake unit
tests use keeps the same promises as the SQL pool."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from postal_support import context
from sqlalchemy.engine import Engine
from state_fakes import MemoryWaybills

from adapters.postal import admin, pool
from adapters.postal.store import SqlWaybills
from adapters.postal.store import metadata as tables
from hub.adaptertables import ensure_schema
from hub.errors import ConfigError, RetryableError
from hub.numberpool import NumberPool as Waybills
from hub.numberpool import PoolCounts
from hub.settings import Settings
from hub.store import Store
from hub.store.engine import make_engine

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        ensure_schema(opened.engine, tables)
        yield opened


@pytest.fixture
def engine(store: Store) -> Engine:
    return store.engine


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def waybills(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Waybills]:
    """The pool's port: the in-memory fake, or the SQL pool on either database."""
    if request.param == "memory":
        yield MemoryWaybills()
        return
    url = (f"sqlite:///{tmp_path / 'pool.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = make_engine(url)
    ensure_schema(engine, tables)
    try:
        yield SqlWaybills(engine)
    finally:
        engine.dispose()


@pytest.fixture
def customer() -> str:
    """A pool of its own: tests share the PostgreSQL database."""
    return f"C{uuid.uuid4().hex[:10].upper()}"


def test_s10_check_digit() -> None:
    # The UPU S10 example: serial 12345678 has check digit 5.
    assert pool.s10_check_digit("12345678") == "5"
    assert pool.check_waybill(" ea123456785vn ") == "EA123456785VN"
    with pytest.raises(ConfigError, match="check digit 4"):
        pool.check_waybill("EA123456784VN")
    with pytest.raises(ConfigError) as err:
        pool.check_waybill("EA-1", "numbers.txt:3")
    assert err.value.field == "numbers.txt:3"


def test_s10_range_computes_check_digits() -> None:
    numbers = pool.expand_range("EA123456785VN", "EA123456808VN")
    assert len(numbers) == 3
    assert numbers[0] == "EA123456785VN"
    assert all(pool.check_waybill(n) == n for n in numbers)
    assert [n[2:10] for n in numbers] == ["12345678", "12345679", "12345680"]


def test_plain_range_keeps_the_width() -> None:
    assert pool.expand_range("VNP0098", "VNP0101") == ["VNP0098", "VNP0099", "VNP0100", "VNP0101"]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("VNP0101", "VNP0098", "backwards"),
        ("EA123456785VN", "EB123456785VN", "one series"),
        ("VNP0001", "XYZ0009", "share their letters"),
        ("VNP0000001", "VNP9999999", "at most"),
    ],
)
def test_bad_ranges(first: str, last: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pool.expand_range(first, last)


def test_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "waybills.txt"
    path.write_text("# batch 7\nEA123456785VN\n\nVNP0001  # spare\n")
    assert pool.read_file(path) == ["EA123456785VN", "VNP0001"]
    path.write_text("EA123456785VN\nnot a number\n")
    with pytest.raises(ConfigError) as err:
        pool.read_file(path)
    assert err.value.field == "waybills.txt:2"


def test_add_is_idempotent(waybills: Waybills, customer: str) -> None:
    first = [f"{customer[:4]}{i:04d}" for i in range(5)]
    assert waybills.add(customer, first, NOW) == 5
    assert waybills.add(customer, [*first[3:], f"{customer[:4]}9999"], NOW) == 1
    assert waybills.counts(customer) == PoolCounts(free=6, taken=0, burned=0)


def test_take_once_per_order(waybills: Waybills, customer: str) -> None:
    numbers = [f"{customer}{i}" for i in range(3)]
    waybills.add(customer, numbers, NOW)
    a = waybills.take(customer, f"{customer}|a", NOW)
    b = waybills.take(customer, f"{customer}|b", NOW)
    assert a != b and {a, b} <= set(numbers)
    # The same order asks again (a redelivered message): the same number.
    assert waybills.take(customer, f"{customer}|a", NOW) == a
    assert waybills.counts(customer) == PoolCounts(free=1, taken=2, burned=0)


def test_empty_pool_is_retryable_and_says_how_to_refill(waybills: Waybills, customer: str) -> None:
    waybills.add(customer, [f"{customer}1"], NOW)
    waybills.take(customer, f"{customer}|a", NOW)
    with pytest.raises(RetryableError) as err:
        waybills.take(customer, f"{customer}|b", NOW)
    assert isinstance(err.value, pool.PoolEmpty)
    assert err.value.code == "server.waybill_pool_empty"
    assert customer in err.value.message
    assert "lienthong postal pool add" in err.value.message
    waybills.add(customer, [f"{customer}2"], NOW)
    assert waybills.take(customer, f"{customer}|b", NOW) == f"{customer}2"


def test_burned_number_is_never_given_again(waybills: Waybills, customer: str) -> None:
    waybills.add(customer, [f"{customer}1", f"{customer}2"], NOW)
    first = waybills.take(customer, f"{customer}|a", NOW)
    waybills.burn(first, "used elsewhere", NOW)
    second = waybills.take(customer, f"{customer}|a", NOW)
    assert second != first
    assert waybills.counts(customer) == PoolCounts(free=0, taken=1, burned=1)
    assert waybills.add(customer, [first], NOW) == 0  # reloading does not revive it


def test_concurrent_workers_never_share_a_number(engine: Engine, customer: str) -> None:
    sql = SqlWaybills(engine)
    size, threads, each = 60, 8, 10  # 80 orders for 60 numbers
    sql.add(customer, [f"{customer}{i:03d}" for i in range(size)], NOW)
    taken: list[tuple[str, str]] = []
    refused: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        start.wait()
        for j in range(each):
            key = f"{customer}|{n}|{j}"
            try:
                number = sql.take(customer, key, NOW)
            except pool.PoolEmpty:
                with lock:
                    refused.append(key)
            except BaseException as exc:  # reported by the assertion below
                with lock:
                    failures.append(exc)
            else:
                with lock:
                    taken.append((key, number))

    pool_threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool_threads:
        t.start()
    for t in pool_threads:
        t.join(timeout=60)
    assert failures == []
    numbers = [number for _, number in taken]
    assert len(numbers) == size and len(set(numbers)) == size
    assert len(refused) == threads * each - size
    assert sql.counts(customer) == PoolCounts(free=0, taken=size, burned=0)
    owners = sql.taken_by(numbers)
    assert all(owners[number] == key for key, number in taken)


def test_concurrent_takes_for_one_order_agree(engine: Engine, customer: str) -> None:
    sql = SqlWaybills(engine)
    sql.add(customer, [f"{customer}{i}" for i in range(10)], NOW)
    got: list[str] = []
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        got.append(sql.take(customer, f"{customer}|same", NOW))

    workers = [threading.Thread(target=worker) for _ in range(6)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=30)
    assert len(got) == 6 and len(set(got)) == 1
    assert sql.counts(customer).taken == 1


def test_pool_add_and_status_for_operators(store: Store, customer: str, tmp_path: Path) -> None:
    ctx = context(
        Settings(data_dir=tmp_path), "http://127.0.0.1:9", store=store, customer_code=customer
    )
    path = tmp_path / "numbers.txt"
    path.write_text("EA000000014VN\nEA000000028VN\n")
    added = admin.pool_add(ctx, file=path, first="EA000000014VN", last="EA000000045VN")
    # The file's two numbers are also in the range: offered 2 + 4, new 4.
    assert (added.offered, added.added) == (6, 4)
    assert added.counts.free == 4
    assert admin.pool_status(ctx) == PoolCounts(free=4, taken=0, burned=0)
