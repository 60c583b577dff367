"""The asyncio client against a real `payrail serve`."""

import asyncio

import pytest

import payrail as p
from payrail.aio import AsyncClient


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


async def open_customer(client, account, deposit=0):
    commands = [p.OpenAccount(p.new_id(), account, account, p.AccountKind.customer, p.CNY, kyc_tier=1)]
    if deposit:
        commands.append(p.Deposit(p.new_id(), account, deposit, p.CNY))
    assert all(result.ok for result in await client.submit(commands))


def test_submit_query_and_status(server, new_account):
    async def scenario():
        async with await AsyncClient.local(server.addr, server.data_dir) as client:
            payer, payee = new_account(), new_account()
            await open_customer(client, payer, deposit=5_000)
            await open_customer(client, payee)
            results = await client.submit(
                [
                    p.Transfer(p.new_id(), payer, payee, 3_000, p.CNY),
                    p.Transfer(p.new_id(), payer, payee, 3_000, p.CNY),
                ]
            )
            assert [r.status for r in results] == [p.Status.ok, p.Status.insufficient_funds]
            view = await client.balance(payee)
            assert view.balance == 3_000 and view.available == 3_000
            assert await client.balance(new_account()) is None
            assert (await client.status())["server.connections_open"] >= 1
            assert len(await client.spending(payer)) == len(p.Category)
            card = p.InstrumentId(payer, 1)
            bind = p.BindInstrument(
                p.new_id(), payer, 1, p.InstrumentKind.card, "tok_1", "ICBC", "CN", "4242", p.CNY
            )
            assert (await client.execute(bind)).ok
            (view,) = await client.instruments(payer)
            assert (view.instrument, view.state) == (card, p.InstrumentState.unverified)
            assert await client.instruments(new_account()) == p.Refused(p.Status.unknown_account)

    run(scenario())


def test_handshake_refuses_a_wrong_secret(server):
    async def scenario():
        name, _ = server.gateway()
        with pytest.raises(p.GatewayRefused) as caught:
            await AsyncClient.connect(server.addr, name, bytes(32), connect_attempts=1)
        assert caught.value.code == p.ErrorCode.bad_proof

    run(scenario())


def test_execute_batches_concurrent_tasks(server, new_account):
    async def scenario():
        async with await AsyncClient.local(server.addr, server.data_dir) as client:
            account = new_account()
            await open_customer(client, account)
            before = (await client.status())["server.requests"]
            commands = [p.Deposit(p.new_id(), account, 1, p.CNY) for _ in range(500)]
            results = await asyncio.gather(*(client.execute(command) for command in commands))
            assert all(result.ok for result in results)
            assert (await client.balance(account)).balance == 500
            requests = (await client.status())["server.requests"] - before - 2
            assert requests <= 10, f"{requests} requests for 500 commands"

    run(scenario())


def test_pipelined_submits_from_many_tasks(server, new_account):
    async def scenario():
        async with await AsyncClient.local(server.addr, server.data_dir) as client:
            account = new_account()
            await open_customer(client, account)
            submits = [
                client.submit([p.Deposit(p.new_id(), account, amount, p.CNY)])
                for amount in range(1, 201)
            ]
            replies = await asyncio.gather(*submits)
            assert all(reply[0].ok for reply in replies)
            assert (await client.balance(account)).balance == sum(range(1, 201))

    run(scenario())


def test_retry_after_a_dropped_connection_returns_the_first_result(server, proxy, new_account):
    async def scenario():
        name, secret = server.gateway()
        async with await AsyncClient.connect(proxy.addr, name, secret) as client:
            payer, payee = new_account(), new_account()
            await open_customer(client, payer, deposit=1_000)
            await open_customer(client, payee)
            transfer = p.Transfer(p.new_id(), payer, payee, 600, p.CNY)
            proxy.drop_next_reply()
            with pytest.raises(p.ConnectionLost) as caught:
                await client.submit([transfer])
            assert caught.value.outcome_unknown and proxy.dropped.is_set()
            assert (await client.balance(payer)).balance == 400
            # A second transfer of 600 would fail; the retry answers ok.
            (retried,) = await client.submit([transfer])
            assert retried.status == p.Status.ok
            assert (await client.balance(payer)).balance == 400
            assert await client.command_status(transfer.id) == p.CommandOutcome(p.Status.ok)

    run(scenario())


def test_history_tx_and_risk_policy(server, new_account):
    async def scenario():
        async with await AsyncClient.local(server.addr, server.data_dir) as client:
            account = new_account()
            await open_customer(client, account, deposit=700)
            for _ in range(200):
                page = await client.history(account)
                if page.entries:
                    break
                await asyncio.sleep(0.02)
            assert [(m.kind, m.amount) for m in page.entries] == [("deposit", 700)]
            reply = await client.tx(page.entries[0].command)
            assert reply.status == p.Status.ok and reply.legs[0].command == page.entries[0].command
            policy = await client.risk_policy()
            assert len(policy.digest) == 32
            assert await client.risk_audit(account) == []

    run(scenario())


def test_close_fails_what_is_waiting(server, new_account):
    async def scenario():
        client = await AsyncClient.local(server.addr, server.data_dir, auto_batch_delay=0.5)
        account = new_account()
        await open_customer(client, account)
        waiting = asyncio.ensure_future(client.execute(p.Deposit(p.new_id(), account, 1, p.CNY)))
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(p.ConnectionLost):
            await waiting
        with pytest.raises(p.ConnectionLost):
            await client.submit([p.Deposit(p.new_id(), account, 1, p.CNY)])

    run(scenario())
