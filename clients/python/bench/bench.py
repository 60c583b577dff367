"""Throughput and latency of the Python client against a running server.

    python3 clients/python/bench/bench.py --addr 127.0.0.1:7400 --data-dir payrail-data

1. seeds --accounts customer accounts (CNY) with a large deposit each;
2. throughput: --connections clients, each keeping --pipeline Submit
   requests of --batch random transfers in flight, for --duration seconds
   (building the Transfer objects with fresh ids is counted: a gateway pays
   for it too); every result must be ok; then the same with one asyncio
   client and --pipeline tasks;
3. latency: --latency-count single transfers one at a time, with
   ``submit([command])`` (one request each) and with ``execute(command)``
   (the automatic batcher and its delay); p50 and p99 in microseconds;
4. the codec alone: encoding a full Submit and decoding a full Results.

Everything is bounded in count and time; it talks to --addr only.
"""

import argparse
import os
import random
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import payrail as p  # noqa: E402
from payrail import wire  # noqa: E402
from payrail._crc32c import crc32c  # noqa: E402

ACCOUNT_FIRST = 5_000_000


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def seed(client, accounts, batch):
    commands = []
    for index in range(accounts):
        account = ACCOUNT_FIRST + index
        commands.append(p.OpenAccount(p.new_id(), account, account, p.AccountKind.customer, p.CNY, kyc_tier=3))
        commands.append(p.Deposit(p.new_id(), account, 10**12, p.CNY))
    for start in range(0, len(commands), batch):
        results = client.submit(commands[start : start + batch])
        refused = [r for r in results if r.status not in (p.Status.ok, p.Status.account_exists)]
        assert not refused, refused[:3]


def transfers(count, accounts, rng):
    new_id = p.new_id
    pick = rng.randrange
    out = []
    for _ in range(count):
        source = pick(accounts)
        target = pick(accounts - 1)
        if target >= source:
            target += 1
        out.append(p.Transfer(new_id(), ACCOUNT_FIRST + source, ACCOUNT_FIRST + target, 1, p.CNY))
    return out


def throughput(options):
    stop_at = time.monotonic() + options.warmup + options.duration
    measure_from = time.monotonic() + options.warmup
    counted = [0] * options.connections
    failures = []

    def drive(slot):
        rng = random.Random(slot)
        with p.Client.local(options.addr, options.data_dir) as client:
            in_flight = []
            while time.monotonic() < stop_at or in_flight:
                while time.monotonic() < stop_at and len(in_flight) < options.pipeline:
                    in_flight.append(client.submit_future(transfers(options.batch, options.accounts, rng)))
                results = in_flight.pop(0).result(60)
                if not all(result.ok for result in results):
                    failures.append([r for r in results if not r.ok][:3])
                if time.monotonic() >= measure_from and time.monotonic() < stop_at:
                    counted[slot] += len(results)

    threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(options.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    return sum(counted) / options.duration


def throughput_asyncio(options):
    """The same load through one AsyncClient: --pipeline tasks, each with
    one Submit in flight at a time."""
    import asyncio

    from payrail.aio import AsyncClient

    async def run():
        counted = 0
        async with await AsyncClient.local(options.addr, options.data_dir) as client:
            stop_at = time.monotonic() + options.warmup + options.duration
            measure_from = time.monotonic() + options.warmup

            async def drive(slot):
                nonlocal counted
                rng = random.Random(100 + slot)
                while time.monotonic() < stop_at:
                    results = await client.submit(transfers(options.batch, options.accounts, rng))
                    assert all(result.ok for result in results)
                    if measure_from <= time.monotonic() < stop_at:
                        counted += len(results)

            await asyncio.gather(*(drive(slot) for slot in range(options.pipeline)))
        return counted / options.duration

    return asyncio.run(run())


def latency(options):
    rng = random.Random(7)
    with p.Client.local(options.addr, options.data_dir) as client:
        figures = {}
        for name, send in (
            ("submit", lambda command: client.submit([command])[0]),
            ("execute", client.execute),
        ):
            samples = []
            deadline = time.monotonic() + 60
            for command in transfers(options.latency_count, options.accounts, rng):
                started = time.perf_counter()
                result = send(command)
                samples.append((time.perf_counter() - started) * 1e6)
                assert result.ok, result
                if time.monotonic() > deadline:
                    break
            warm = samples[len(samples) // 10 :]
            figures[name] = (len(warm), statistics.median(warm), percentile(warm, 0.99))
        return figures


def codec(options):
    """Client CPU for one full batch, best of 5 (ms): building the Transfer
    objects, encoding the Submit body, its CRC32C, framing (both CRCs), and
    decoding a Results of as many plain results."""
    rng = random.Random(3)
    commands = transfers(options.batch, options.accounts, rng)
    body = wire.encode_submit(commands)
    results = b"".join([len(commands).to_bytes(8, "little")] + [bytes(6)] * len(commands))
    steps = {
        "build": lambda: transfers(options.batch, options.accounts, rng),
        "encode": lambda: wire.encode_submit(commands),
        "crc_body": lambda: crc32c(body),
        "frame": lambda: wire.frame(1, wire.Kind.SUBMIT, body),
        "decode_results": lambda: wire.decode_body(wire.Kind.RESULTS, results),
    }
    best = {}
    for name, step in steps.items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        best[name] = round(min(times) * 1e3, 1)
    best["body_bytes"] = len(body)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:7400")
    parser.add_argument("--data-dir", default="payrail-data")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=8190)
    parser.add_argument("--pipeline", type=int, default=4)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--latency-count", type=int, default=2_000)
    options = parser.parse_args()
    if not 0 < options.duration <= 600:
        parser.error("--duration is 0 to 600 s")
    print(f"python {sys.version.split()[0]}, payrail client {p.__version__}", flush=True)
    with p.Client.local(options.addr, options.data_dir) as client:
        seed(client, options.accounts, min(options.batch, client.limits.batch_commands_max))
    print("client CPU for one full batch (ms, best of 5):", codec(options), flush=True)
    rate = throughput(options)
    print(
        f"throughput: {rate:,.0f} transfers/s ({options.connections} connection(s), "
        f"{options.pipeline} in flight, batch {options.batch}, {options.duration:g} s)",
        flush=True,
    )
    rate = throughput_asyncio(options)
    print(f"throughput, asyncio client: {rate:,.0f} transfers/s ({options.pipeline} tasks)", flush=True)
    for name, (count, p50, p99) in latency(options).items():
        print(f"latency {name}: p50 {p50:,.0f} us, p99 {p99:,.0f} us ({count} sequential transfers)")


if __name__ == "__main__":
    main()
