"""The blocking client against a real `payrail serve`."""

import dataclasses
import os
import random
import threading

import pytest

import payrail as p
from payrail import wire

from conftest import Server, free_addr
from test_wire import PROMPTPAY_STATIC


def open_customer(client, account, owner, currency=p.CNY, deposit=0):
    commands = [p.OpenAccount(p.new_id(), account, owner, p.AccountKind.customer, currency, kyc_tier=1)]
    if deposit:
        commands.append(p.Deposit(p.new_id(), account, deposit, currency))
    assert [r.status for r in client.submit(commands)] == [p.Status.ok] * len(commands)


def open_merchant(client, account, owner, currency=p.CNY):
    command = p.OpenAccount(p.new_id(), account, owner, p.AccountKind.merchant, currency, mcc=5812)
    assert client.submit([command])[0].status == p.Status.ok


def test_handshake_refuses_a_wrong_secret_and_an_unknown_gateway(server):
    name, secret = server.gateway()
    with pytest.raises(p.GatewayRefused) as caught:
        p.Client(server.addr, name, bytes(32), connect_attempts=1)
    assert caught.value.code == p.ErrorCode.bad_proof
    with pytest.raises(p.GatewayRefused) as caught:
        p.Client(server.addr, "nobody", secret, connect_attempts=1)
    assert caught.value.code == p.ErrorCode.unknown_gateway
    with p.Client(server.addr, name, secret.hex()) as client:
        assert client.limits.batch_commands_max == 8190


def test_connect_to_nothing_says_so():
    listener = __import__("socket").create_server(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % listener.getsockname()[1]
    listener.close()
    with pytest.raises(p.ConnectError) as caught:
        p.Client(addr, "local", bytes(32), connect_attempts=1)
    assert "payrail serve" in str(caught.value)


def test_every_command_kind(server, new_account):
    client = server.client()
    payer, merchant, yen, empty = (new_account() for _ in range(4))
    owner = payer
    ok = p.Status.ok
    open_customer(client, payer, owner, deposit=100_000)
    open_customer(client, yen, owner, currency=p.JPY)
    open_customer(client, empty, new_account())
    open_merchant(client, merchant, merchant)

    def run(command, expected=ok):
        result = client.submit([command])[0]
        assert result.status == expected, (command, result)
        return result

    run(p.Transfer(p.new_id(), payer, merchant, 1_000, p.CNY))
    run(p.Transfer(p.new_id(), payer, merchant, 10**9, p.CNY), p.Status.insufficient_funds)

    hold = p.new_id()
    run(p.WithdrawHold(hold, payer, 2_000, p.CNY, timeout_ms=60_000))
    assert client.balance(payer).debits_pending == 2_000
    run(p.WithdrawPost(p.new_id(), hold))
    run(p.WithdrawPost(p.new_id(), hold), p.Status.hold_already_posted)
    voided = p.new_id()
    run(p.WithdrawHold(voided, payer, 500, p.CNY, timeout_ms=60_000))
    run(p.WithdrawVoid(p.new_id(), voided))
    assert client.balance(payer).debits_pending == 0

    run(p.Freeze(p.new_id(), empty))
    run(p.Freeze(p.new_id(), empty), p.Status.account_already_frozen)
    run(p.Unfreeze(p.new_id(), empty))
    run(p.SetKycTier(p.new_id(), empty, 2))
    assert client.balance(empty).kyc_tier == 2
    run(p.Close(p.new_id(), empty))
    assert client.balance(empty).status == p.AccountStatus.closed

    key = random.getrandbits(120) + 1
    run(p.RegisterMerchantKey(p.new_id(), merchant, key))
    paid = p.new_id()
    run(p.PayMerchantQr(paid, payer, (key,), 800, 0, p.CNY))
    run(p.Refund(p.new_id(), paid, 300, p.CNY))
    run(p.Refund(p.new_id(), paid, 600, p.CNY), p.Status.refund_exceeds_payment)

    code = random.randrange(10**17, 10**18)
    run(p.IssuePaymentCode(p.new_id(), payer, code, 60_000))
    run(p.ChargePaymentCode(p.new_id(), merchant, code, 700, p.CNY))
    run(p.ChargePaymentCode(p.new_id(), merchant, code, 700, p.CNY), p.Status.payment_code_used)

    run(p.SetBudget(p.new_id(), payer, int(p.Category.food_and_drink), 100))
    crossed = run(p.Transfer(p.new_id(), payer, merchant, 150, p.CNY))
    assert crossed.budget is None or crossed.budget.category == p.Category.food_and_drink

    run(p.SetFxRate(p.new_id(), p.CNY, p.JPY, p.FxMid(2087, 2), 50, 600_000, "ECB"))
    run(p.SetFxFloor(p.new_id(), p.JPY, 10**9))
    order = p.FxOrder(from_=payer, to=yen, amount=1_000, side=p.FxSide.pay)
    quote = p.new_id()
    quoted = run(p.FxQuote(quote, order, 60_000))
    assert quoted.fx.pay == 1_000 and quoted.fx.receive > 0 and quoted.fx.expires_at > 0
    converted = run(p.FxConvertQuote(p.new_id(), quote, payer))
    assert converted.fx.receive == quoted.fx.receive
    direct = run(p.FxConvert(p.new_id(), p.FxOrder(payer, yen, 500, p.FxSide.receive)))
    assert direct.fx.receive == 500
    assert client.balance(yen).balance == quoted.fx.receive + 500

    rates = client.query([p.FxRateQuery(0), p.FxRateQuery(1_000)])
    assert isinstance(rates[0], p.FxRateView) and rates[0].source == "ECB"
    assert rates[1] == p.Refused(p.Status.fx_rate_unknown)
    client.close()


def test_bank_cards_bind_verify_top_up_withdraw_and_show_in_history(server, new_account):
    with server.client() as client:
        account, other = new_account(), new_account()
        owner = account
        open_customer(client, account, owner)
        open_customer(client, other, other)
        ok = p.Status.ok

        def run(command, expected=ok):
            result = client.execute(command)
            assert result.status == expected, (command, result)
            return result

        card = p.InstrumentId(owner, 1)
        bank = p.InstrumentId(owner, 2)
        assert str(card) == f"{owner}/1" and p.InstrumentId.parse(f"{owner}/1") == card
        assert client.instruments(account) == []
        bind = p.BindInstrument(
            p.new_id(), account, 1, p.InstrumentKind.card, "tok_8f2k1", "ICBC", "CN", "4242", p.CNY
        )
        run(bind)
        run(
            p.BindInstrument(
                p.new_id(),
                account,
                2,
                p.InstrumentKind.bank_account,
                "tok_acct_77",
                "Bank of China",
                "CN",
                "1234",
                p.CNY,
            )
        )
        # Not usable before the gateway's check passed; the number is taken.
        run(p.DepositFrom(p.new_id(), account, 5_000, p.CNY, card), p.Status.instrument_unverified)
        again = dataclasses.replace(bind, id=p.new_id(), token="tok_other")
        run(again, p.Status.instrument_exists)
        run(p.VerifyInstrument(p.new_id(), card))
        run(p.VerifyInstrument(p.new_id(), bank, passed=False))
        run(p.VerifyInstrument(p.new_id(), bank))
        run(p.VerifyInstrument(p.new_id(), bank), p.Status.instrument_already_verified)

        run(p.DepositFrom(p.new_id(), account, 5_000, p.CNY, card))
        # Once a card is bound, a top-up names one.
        run(p.Deposit(p.new_id(), account, 100, p.CNY), p.Status.instrument_required)
        run(p.DepositFrom(p.new_id(), other, 100, p.CNY, card), p.Status.instrument_not_yours)
        hold = p.new_id()
        run(p.WithdrawHoldTo(hold, account, 2_000, p.CNY, 60_000, bank))
        assert client.balance(account).debits_pending == 2_000
        # Unbound while the money is on its way: the withdrawal goes on.
        run(p.UnbindInstrument(p.new_id(), bank))
        run(p.WithdrawPost(p.new_id(), hold))
        run(
            p.WithdrawHoldTo(p.new_id(), account, 1, p.CNY, 60_000, bank),
            p.Status.instrument_unbound,
        )
        assert client.balance(account).balance == 3_000

        views = client.instruments(account)
        assert [(v.instrument, v.kind, v.state) for v in views] == [
            (card, p.InstrumentKind.card, p.InstrumentState.verified),
            (bank, p.InstrumentKind.bank_account, p.InstrumentState.unbound),
        ]
        first = views[0]
        assert (first.token, first.bank, first.country, first.last_four) == (
            "tok_8f2k1",
            "ICBC",
            "CN",
            "4242",
        )
        assert first.currency == p.CNY and first.instruments_total == 2
        assert first.bound_at > 0 and first.changed_at >= first.bound_at
        assert client.instruments(new_account()) == p.Refused(p.Status.unknown_account)

        # The history names the instruments, as they were (one is unbound).
        for _ in range(200):
            page = client.history(account)
            if len(page.entries) == 2:
                break
            threading.Event().wait(0.02)
        assert [(e.kind, str(e.instrument)) for e in page.entries] == [
            ("withdraw_post", "Bank of China ****1234 (instrument 2)"),
            ("deposit_from", "ICBC ****4242 (instrument 1)"),
        ]

        # A card number never leaves the client.
        with pytest.raises(p.EncodeError):
            client.execute(
                p.BindInstrument(
                    p.new_id(),
                    account,
                    3,
                    p.InstrumentKind.card,
                    "4111 1111 1111 1111",
                    "ICBC",
                    "CN",
                    "1111",
                    p.CNY,
                )
            )
        assert len(client.instruments(account)) == 2


def test_queries(server, new_account):
    with server.client() as client:
        account = new_account()
        opened = p.new_id()
        client.submit([p.OpenAccount(opened, account, account, p.AccountKind.customer, p.CNY)])
        replies = client.query(
            [
                p.BalanceQuery(account),
                p.BalanceQuery(new_account()),
                p.CommandQuery(opened),
                p.CommandQuery(p.new_id()),
                p.RiskPolicyQuery(),
                p.RiskAuditQuery(account, 0),
                p.SpendingQuery(account, 0, int(p.Category.groceries)),
            ]
        )
        assert replies[0].account == account and replies[0].kind == p.AccountKind.customer
        assert replies[1] == p.Refused(p.Status.unknown_account)
        assert replies[2] == p.CommandOutcome(p.Status.ok)
        assert replies[3] == p.Refused(p.Status.unknown_command)
        assert isinstance(replies[4], p.RiskPolicyReply) and len(replies[4].digest) == 32
        assert replies[5].entries == 0
        assert replies[6].category == int(p.Category.groceries) and replies[6].spent == 0
        assert client.balance(new_account()) is None
        assert client.risk_audit(account) == []
        assert len(client.spending(account)) == len(p.Category)
        assert client.command_status(opened) == p.CommandOutcome(p.Status.ok)


def test_risk_policy_steps_up_and_audits(tmp_path, new_account):
    """A fresh server: the policy in force is this test's alone."""
    server = Server(tmp_path).start()
    try:
        with server.client() as client:
            policy = p.RiskPolicy(
                blocked_countries=p.BlockList(p.Response(p.Action.decline), ("KP",)),
            )
            answer = client.set_risk_policy(policy)
            assert answer.status == p.Status.ok
            assert client.risk_policy().digest == answer.digest
            assert client.risk_policy().rule_names == [p.RuleId.blocked_country]
            payer, merchant = new_account(), new_account()
            open_customer(client, payer, payer, deposit=10_000)
            open_merchant(client, merchant, merchant)
            context = p.RiskContext(country="KP")
            result = client.submit([p.Transfer(p.new_id(), payer, merchant, 100, p.CNY, context)])[0]
            assert result.status == p.Status.risk_declined
            assert result.risk.rule == p.RuleId.blocked_country
            assert result.risk.verdict == p.Verdict.decline
            audit = client.risk_audit(payer)
            assert [entry.rule for entry in audit] == [p.RuleId.blocked_country]
    finally:
        server.stop()


def test_submit_qr_history_tx_status_and_backup(server, new_account, tmp_path):
    with server.client() as client:
        payer, payee = new_account(), new_account()
        open_customer(client, payer, payer, deposit=50_000)
        open_customer(client, payee, payee)
        moved = p.new_id()
        assert client.submit([p.Transfer(moved, payer, payee, 1_250, p.CNY)])[0].ok
        (qr,) = client.submit_qr([p.QrPayment(p.new_id(), payer, PROMPTPAY_STATIC, amount=100)])
        # The code's merchant key is registered with no merchant here.
        assert qr.status == p.Status.unknown_merchant

        # History is written shortly after the acknowledgement.
        for _ in range(200):
            page = client.history(payer)
            if len(page.entries) == 2:
                break
            threading.Event().wait(0.02)
        assert [entry.kind for entry in page.entries] == ["transfer", "deposit"]
        assert page.entries[0].balance == 50_000 - 1_250 and page.next_cursor == 0
        first = client.history(payer, limit=1)
        assert len(first.entries) == 1 and first.next_cursor != 0
        rest = client.history(payer, cursor=first.next_cursor, limit=1)
        assert rest.entries[0].kind == "deposit"

        reply = client.tx(moved)
        assert reply.source == p.TxSource.record and reply.status == p.Status.ok
        assert sorted(leg.amount for leg in reply.legs) == [-1_250, 1_250]
        assert client.tx(p.new_id()).source == p.TxSource.unknown

        fields = client.status()
        assert fields["server.connections_open"] >= 1
        assert fields["engine.commands_applied"] >= 3

        directory = str(tmp_path / "backup")
        assert client.backup(directory) >= 1
        assert os.path.exists(os.path.join(directory, "gateway.toml"))
        with pytest.raises(p.ServerError) as caught:
            client.backup(directory)
        assert caught.value.code == p.ErrorCode.backup_failed
        # A refused request leaves the connection usable.
        assert client.balance(payer).balance == 50_000 - 1_250


def test_retry_after_a_dropped_connection_returns_the_first_result(server, proxy, new_account):
    payer, payee = new_account(), new_account()
    with server.client() as direct:
        open_customer(direct, payer, payer, deposit=10_000)
        open_customer(direct, payee, payee)
    name, secret = server.gateway()
    client = p.Client(proxy.addr, name, secret)
    commands = [
        p.Transfer(p.new_id(), payer, payee, 4_000, p.CNY),
        p.Transfer(p.new_id(), payer, payee, 4_000, p.CNY),
        p.Transfer(p.new_id(), payer, payee, 4_000, p.CNY),
    ]
    proxy.drop_next_reply()
    with pytest.raises(p.ConnectionLost) as caught:
        client.submit(commands)
    assert caught.value.outcome_unknown
    assert proxy.dropped.is_set()
    # The server applied the batch (the third has no funds left) ...
    assert client.balance(payer).balance == 2_000
    # ... and the retry, on a new connection, answers with the first results.
    retried = client.submit(commands)
    assert [r.status for r in retried] == [p.Status.ok, p.Status.ok, p.Status.insufficient_funds]
    assert client.balance(payer).balance == 2_000
    assert client.balance(payee).balance == 8_000
    # The same id with other fields is not a retry.
    changed = p.Transfer(commands[0].id, payer, payee, 1, p.CNY)
    assert client.submit([changed])[0].status == p.Status.id_reused_with_different_fields
    client.close()


def test_pipelined_requests_from_one_thread(server, new_account):
    with server.client() as client:
        account = new_account()
        open_customer(client, account, account)
        before = client.status()["server.requests"]
        futures = [
            client.submit_future([p.Deposit(p.new_id(), account, amount, p.CNY)])
            for amount in range(1, 201)
        ]
        assert all(future.result(30)[0].ok for future in futures)
        assert client.balance(account).balance == sum(range(1, 201))
        # 200 submits, the balance query, and the status request itself.
        assert client.status()["server.requests"] - before == 202


def test_execute_batches_commands_from_many_threads(server, new_account):
    with server.client(auto_batch_delay=0.02) as client:
        account = new_account()
        open_customer(client, account, account)
        before = client.status()["server.requests"]
        threads_count, per_thread = 16, 25
        statuses = []

        def work():
            for _ in range(per_thread):
                statuses.append(client.execute(p.Deposit(p.new_id(), account, 1, p.CNY)).status)

        threads = [threading.Thread(target=work) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        commands = threads_count * per_thread
        assert statuses == [p.Status.ok] * commands
        assert client.balance(account).balance == commands
        requests = client.status()["server.requests"] - before - 2
        assert requests <= commands // 4, f"{requests} requests for {commands} commands"


def test_batches_over_the_limit_are_refused_before_sending(server):
    with server.client() as client:
        before = client.status()["server.requests"]
        too_many = [p.Deposit(p.new_id(), 1, 1, p.CNY)] * (client.limits.batch_commands_max + 1)
        with pytest.raises(p.BatchTooLarge):
            client.submit(too_many)
        with pytest.raises(p.BatchTooLarge):
            client.submit_qr([p.QrPayment(p.new_id(), 1, PROMPTPAY_STATIC)] * (wire.QR_BATCH_MAX + 1))
        assert client.submit([]) == []
        assert client.status()["server.requests"] - before == 1


def test_a_full_batch_round_trips(server, new_account):
    with server.client() as client:
        payer, payee = new_account(), new_account()
        count = client.limits.batch_commands_max
        open_customer(client, payer, payer, deposit=count)
        open_customer(client, payee, payee)
        results = client.submit([p.Transfer(p.new_id(), payer, payee, 1, p.CNY) for _ in range(count)])
        assert len(results) == count and all(result.ok for result in results)
        assert client.balance(payee).balance == count


def test_requests_in_flight_fail_when_the_server_goes_away(tmp_path, new_account):
    server = Server(tmp_path).start()
    client = server.client(connect_attempts=1)
    account = new_account()
    open_customer(client, account, account)
    server.kill()
    with pytest.raises(p.PayrailError) as caught:
        for _ in range(100):
            client.submit([p.Deposit(p.new_id(), account, 1, p.CNY)])
    assert isinstance(caught.value, (p.ConnectionLost, p.ConnectError))
    client.close()


def test_no_reply_in_time_is_a_timeout_with_an_unknown_outcome(server, proxy, new_account):
    account = new_account()
    name, secret = server.gateway()
    with p.Client(proxy.addr, name, secret, request_timeout=0.5) as client:
        open_customer(client, account, account)
        proxy.stall_replies()
        deposit = p.Deposit(p.new_id(), account, 700, p.CNY)
        with pytest.raises(p.RequestTimeout) as caught:
            client.submit([deposit])
        assert caught.value.outcome_unknown
    with server.client() as direct:
        # Applied although its reply never came; the retry says so.
        assert direct.submit([deposit])[0].status == p.Status.ok
        assert direct.balance(account).balance == 700


def test_retry_after_a_server_crash_returns_the_first_result(tmp_path, new_account):
    """The idempotency records survive a kill -9: the client reconnects by
    itself and a retried batch answers with its first results."""
    server = Server(tmp_path, listen=free_addr()).start()
    try:
        client = server.client()
        payer, payee = new_account(), new_account()
        open_customer(client, payer, payer, deposit=1_000)
        open_customer(client, payee, payee)
        batch = [
            p.Transfer(p.new_id(), payer, payee, 600, p.CNY),
            p.Transfer(p.new_id(), payer, payee, 600, p.CNY),
        ]
        first = [result.status for result in client.submit(batch)]
        assert first == [p.Status.ok, p.Status.insufficient_funds]
        server.kill()
        server.start()
        assert [result.status for result in client.submit(batch)] == first
        assert client.balance(payer).balance == 400
        client.close()
    finally:
        server.stop()


def test_close_fails_what_is_waiting(server, new_account):
    client = server.client(auto_batch_delay=0.5)
    account = new_account()
    open_customer(client, account, account)
    waiting = client.execute_future(p.Deposit(p.new_id(), account, 1, p.CNY))
    client.close()
    with pytest.raises(p.ConnectionLost):
        waiting.result(10)
    with pytest.raises(p.ConnectionLost):
        client.submit([p.Deposit(p.new_id(), account, 1, p.CNY)])
