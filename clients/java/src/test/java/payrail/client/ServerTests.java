package payrail.client;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

/** The client against a real payrail server (one per run, fresh data directory). */
final class ServerTests {
    private ServerTests() {}

    static TestServer server;

    /** Command ids unique across the run. */
    private static final AtomicLong IDS = new AtomicLong(1_000_000);

    static CommandId id() {
        return CommandId.of(IDS.incrementAndGet());
    }

    static PayrailClient connect() {
        return PayrailClient.connect(server.config());
    }

    static Status ok(PayrailClient client, Command command) {
        CommandResult result = client.execute(command);
        Check.equal(Status.OK, result.status(), command.kind().getClass().getSimpleName() + " " + result);
        return result.status();
    }

    static AccountView account(PayrailClient client, long id) {
        return client.account(id).orElseThrow(() -> new AssertionError("no account " + id));
    }

    /** A customer account with {@code amount} deposited. */
    static void customer(PayrailClient client, long account, long owner, long amount) {
        ok(client, Command.openCustomer(id(), account, owner, Currency.CNY, 1));
        if (amount > 0) {
            ok(client, Command.deposit(id(), account, amount, Currency.CNY));
        }
    }

    static List<TestMain.Case> cases(Path root) {
        List<TestMain.Case> cases = new ArrayList<>();
        // First, while the server is fresh, as the README says.
        cases.add(new TestMain.Case("server: the README example works as written", () -> readmeExample(root)));
        cases.add(new TestMain.Case("server: the handshake gives the server's limits", () -> {
            try (PayrailClient client = connect()) {
                Check.equal(new ServerLimits(1 << 20, 8_190, 64), client.serverLimits(), "limits");
            }
        }));
        cases.add(new TestMain.Case("server: a wrong secret or an unknown gateway is refused by name", () -> {
            ClientConfig good = server.config();
            PayrailException wrong = Check.fails(PayrailException.Kind.GATEWAY_REFUSED,
                    () -> PayrailClient.connect(new ClientConfig(good.addr(), good.gateway(), new byte[32])),
                    "a wrong secret");
            Check.equal(ErrorCode.BAD_PROOF, wrong.errorCode(), "code");
            Check.isTrue(wrong.getMessage().contains("wrong secret"), wrong.getMessage());
            PayrailException unknown = Check.fails(PayrailException.Kind.GATEWAY_REFUSED,
                    () -> PayrailClient.connect(new ClientConfig(good.addr(), "nobody", new byte[32])),
                    "an unknown gateway");
            Check.equal(ErrorCode.UNKNOWN_GATEWAY, unknown.errorCode(), "code");
            Check.isTrue(!wrong.outcomeUnknown(), "nothing was sent, so the outcome is known");
        }));
        cases.add(new TestMain.Case("server: connecting where nothing listens fails with CONNECT", () -> {
            java.net.ServerSocket socket = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
            int port = socket.getLocalPort();
            socket.close();
            Check.fails(PayrailException.Kind.CONNECT, () -> PayrailClient.connect(
                    new ClientConfig("127.0.0.1:" + port, "local", new byte[32]).withConnectAttempts(2)), "closed port");
        }));
        cases.add(new TestMain.Case("server: transfers move money once and a rejection has its status name", () -> {
            try (PayrailClient client = connect()) {
                customer(client, 1101, 1, 10_000);
                ok(client, Command.openMerchant(id(), 2101, 2, Currency.CNY, 5812));
                CommandId pay = id();
                List<CommandResult> results = client.submit(List.of(
                        Command.transfer(pay, 1101, 2101, 1_250, Currency.CNY),
                        Command.transfer(id(), 1101, 2101, 1_000_000, Currency.CNY),
                        Command.transfer(id(), 1101, 9999, 1, Currency.CNY)));
                Check.equal(Status.OK, results.get(0).status(), "the first transfer");
                Check.equal(Status.INSUFFICIENT_FUNDS, results.get(1).status(), "too much");
                Check.equal("insufficient_funds", results.get(1).status().wireName(), "status name");
                Check.equal(Status.UNKNOWN_CREDIT_ACCOUNT, results.get(2).status(), "unknown receiver");
                Check.equal(8_750L, account(client, 1101).balance(), "payer's balance");
                Check.equal(1_250L, account(client, 2101).available(), "merchant's balance");
                Check.isTrue(client.account(424242).isEmpty(), "an unknown account");
                // Re-sending the same id returns the first result and moves nothing.
                Check.equal(Status.OK, client.execute(Command.transfer(pay, 1101, 2101, 1_250, Currency.CNY)).status(),
                        "the retry");
                Check.equal(8_750L, account(client, 1101).balance(), "balance after the retry");
                Check.equal(Status.ID_REUSED_WITH_DIFFERENT_FIELDS,
                        client.execute(Command.transfer(pay, 1101, 2101, 1, Currency.CNY)).status(), "same id, other fields");
                Check.equal(new QueryReply.CommandStatus(Status.OK), client.query(new Query.CommandStatus(pay)),
                        "the command's first result");
                Check.equal(new QueryReply.Refused(Status.UNKNOWN_COMMAND),
                        client.query(new Query.CommandStatus(CommandId.parse("340282366920938463463374607431768211455"))),
                        "an id never used");
            }
        }));
        cases.add(new TestMain.Case("server: pipelined requests are matched to their replies", () -> {
            try (PayrailClient client = connect()) {
                int accounts = 150; // more than inflight_max (64): the client waits for slots
                List<Command> opens = new ArrayList<>();
                for (int i = 0; i < accounts; i++) {
                    opens.add(Command.openCustomer(id(), 50_000 + i, 50_000 + i, Currency.CNY, 1));
                }
                for (CommandResult result : client.submit(opens)) {
                    Check.equal(Status.OK, result.status(), "open");
                }
                List<CompletableFuture<List<CommandResult>>> deposits = new ArrayList<>();
                for (int i = 0; i < accounts; i++) {
                    deposits.add(client.submitAsync(List.of(Command.deposit(id(), 50_000 + i, 100 + i, Currency.CNY))));
                }
                List<CompletableFuture<List<QueryReply>>> balances = new ArrayList<>();
                for (int i = 0; i < accounts; i++) {
                    balances.add(client.queryAsync(List.of(new Query.Balance(50_000 + i))));
                }
                for (CompletableFuture<List<CommandResult>> deposit : deposits) {
                    Check.equal(Status.OK, PayrailClient.await(deposit).get(0).status(), "deposit");
                }
                for (int i = 0; i < accounts; i++) {
                    QueryReply reply = PayrailClient.await(balances.get(i)).get(0);
                    AccountView view = ((QueryReply.Balance) reply).account();
                    Check.equal(50_000L + i, view.account(), "the reply is for the account asked");
                    // Replies come in request order: each deposit came before its balance query.
                    Check.equal(100L + i, view.balance(), "balance of " + view.account());
                }
            }
        }));
        cases.add(new TestMain.Case("server: single commands sent together are batched into few requests", () -> {
            try (PayrailClient client = connect()) {
                customer(client, 3001, 3, 0);
                long requestsBefore = client.status().get("server.requests");
                int commands = 2_000;
                List<CompletableFuture<CommandResult>> results = new ArrayList<>();
                for (int i = 0; i < commands; i++) {
                    results.add(client.executeAsync(Command.deposit(id(), 3001, 1, Currency.CNY)));
                }
                for (CompletableFuture<CommandResult> result : results) {
                    Check.equal(Status.OK, PayrailClient.await(result).status(), "deposit");
                }
                long requests = client.status().get("server.requests") - requestsBefore;
                Check.isTrue(requests <= commands / 10, commands + " commands took " + requests + " requests");
                Check.equal((long) commands, account(client, 3001).balance(), "balance");
            }
        }));
        cases.add(new TestMain.Case("server: a batch over the server's limit is refused before sending", () -> {
            try (PayrailClient client = connect()) {
                List<Command> commands = new ArrayList<>();
                for (int i = 0; i < 8_191; i++) {
                    commands.add(Command.deposit(id(), 1001, 1, Currency.CNY));
                }
                long before = client.status().get("server.requests");
                Check.fails(PayrailException.Kind.BATCH_TOO_LARGE, () -> client.submit(commands), "8191 commands");
                Check.equal(before + 1, client.status().get("server.requests"), "only the status request was sent");
            }
        }));
        cases.add(new TestMain.Case("server: a retry after a dropped connection returns the first result", () -> {
            try (PayrailClient setup = connect()) {
                customer(setup, 4001, 4, 1_000);
                customer(setup, 4002, 5, 0);
            }
            try (DropProxy proxy = new DropProxy(server.addr)) {
                ClientConfig direct = server.config();
                proxy.armed.set(true);
                try (PayrailClient client = PayrailClient.connect(
                        new ClientConfig(proxy.addr(), direct.gateway(), direct.secret()))) {
                    Command payAll = Command.transfer(id(), 4001, 4002, 1_000, Currency.CNY);
                    PayrailException lost = Check.fails(PayrailException.Kind.CONNECTION_LOST,
                            () -> client.execute(payAll), "the reply was cut");
                    Check.isTrue(lost.outcomeUnknown(), "outcome unknown");
                    Check.equal(1, proxy.drops.get(), "the proxy cut one reply");
                    try (PayrailClient other = connect()) {
                        Check.equal(0L, account(other, 4001).balance(), "the transfer was applied");
                    }
                    // The gateway retries with the same id; the client reconnects by itself.
                    proxy.armed.set(false);
                    CommandResult retried = client.execute(payAll);
                    Check.equal(Status.OK, retried.status(), "the retry returns the first result");
                    Check.equal(2, proxy.connections.get(), "the retry went on a new connection");
                    Check.equal(Status.INSUFFICIENT_FUNDS,
                            client.execute(Command.transfer(id(), 4001, 4002, 1_000, Currency.CNY)).status(),
                            "the same payment with a new id is refused: the money moved once");
                    Check.equal(0L, account(client, 4001).balance(), "paid once");
                    Check.equal(1_000L, account(client, 4002).balance(), "received once");
                }
            }
        }));
        cases.add(new TestMain.Case("server: a retry after a request timeout returns the first result", () -> {
            try (PayrailClient setup = connect()) {
                customer(setup, 4101, 41, 700);
                customer(setup, 4102, 42, 0);
            }
            try (DropProxy proxy = new DropProxy(server.addr)) {
                ClientConfig direct = server.config();
                ClientConfig viaProxy = new ClientConfig(proxy.addr(), direct.gateway(), direct.secret())
                        .withRequestTimeout(java.time.Duration.ofMillis(500));
                Command payAll = Command.transfer(id(), 4101, 4102, 700, Currency.CNY);
                proxy.armed.set(true);
                proxy.swallow.set(true);
                try (PayrailClient client = PayrailClient.connect(viaProxy)) {
                    PayrailException timeout = Check.fails(PayrailException.Kind.TIMEOUT, () -> client.execute(payAll),
                            "no reply");
                    Check.isTrue(timeout.outcomeUnknown(), "outcome unknown");
                }
                try (PayrailClient other = connect()) {
                    Check.equal(0L, account(other, 4101).balance(), "the transfer was applied");
                }
                proxy.armed.set(false);
                try (PayrailClient client = PayrailClient.connect(viaProxy)) {
                    Check.equal(Status.OK, client.execute(payAll).status(), "the retry returns the first result");
                    Check.equal(700L, account(client, 4102).balance(), "received once");
                }
            }
        }));
        cases.add(new TestMain.Case("server: every command kind", () -> {
            try (PayrailClient client = connect()) {
                everyCommandKind(client);
            }
        }));
        cases.add(new TestMain.Case("server: bank cards are bound, verified, topped up from and withdrawn to", () -> {
            try (PayrailClient client = connect()) {
                bankCards(client);
            }
        }));
        cases.add(new TestMain.Case("server: history, tx, status and backups", () -> {
            try (PayrailClient client = connect()) {
                historyTxStatusBackup(client);
            }
        }));
        cases.add(new TestMain.Case("server: a risk policy is put in force and decides payments", () -> {
            try (PayrailClient client = connect()) {
                riskPolicy(client);
            }
        }));
        cases.add(new TestMain.Case("server: QR payments are parsed by the server", () -> {
            try (PayrailClient client = connect()) {
                customer(client, 7001, 7, 100_000);
                List<CommandResult> results = client.submitQr(List.of(
                        new QrPayment(id(), 7001, 12_500L, VectorTests.PROMPTPAY_STATIC),
                        new QrPayment(id(), 7001, 100L, "not a qr code")));
                Check.equal(Status.UNKNOWN_MERCHANT, results.get(0).status(), "a code of an unregistered merchant");
                Check.equal(Status.QR_MALFORMED, results.get(1).status(), "garbage");
                // A merchant registered under the key derived here is paid by a code naming it
                // (the payload as `payrail merchant qr --gui br.gov.bcb.pix --merchant-id
                // shop@example.com --mcc 5812 --currency CNY --country CN --name Noodles
                // --city Shanghai` prints it: static, no amount).
                ok(client, Command.openMerchant(id(), 7101, 71, Currency.CNY, 5812));
                ok(client, new Command(id(), new Command.RegisterMerchantKey(7101,
                        MerchantKey.of("br.gov.bcb.pix", "shop@example.com"))));
                String payload = "00020101021126380014br.gov.bcb.pix0116shop@example.com5204581253031565802CN"
                        + "5907Noodles6008Shanghai630430CC";
                CommandId payment = id();
                Check.equal(Status.QR_AMOUNT_REQUIRED,
                        client.submitQr(List.of(new QrPayment(id(), 7001, null, payload))).get(0).status(),
                        "a static code without an amount");
                Check.equal(Status.OK, client.submitQr(List.of(new QrPayment(payment, 7001, 800L, payload))).get(0).status(),
                        "paying the registered merchant");
                Check.equal(800L, account(client, 7101).balance(), "the merchant was paid");
                Check.equal(99_200L, account(client, 7001).balance(), "the payer paid");
            }
        }));
        return cases;
    }

    static void everyCommandKind(PayrailClient client) throws Exception {
        long payer = 5001;
        long jpy = 5002;
        long merchant = 5101;
        RiskContext context = new RiskContext(7, (short) 3123, (short) 12147, "CN", false);
        ok(client, new Command(id(), new Command.OpenAccount(payer, 50, AccountKind.CUSTOMER, Currency.CNY, 1, 0)));
        ok(client, new Command(id(), new Command.OpenAccount(jpy, 50, AccountKind.CUSTOMER, Currency.JPY, 1, 0)));
        ok(client, Command.openMerchant(id(), merchant, 51, Currency.CNY, 5812));
        ok(client, Command.deposit(id(), payer, 100_000, Currency.CNY));
        ok(client, Command.transfer(id(), payer, merchant, 1_000, Currency.CNY, context));
        // Holds: one posted, one voided.
        CommandId hold = id();
        ok(client, new Command(hold, new Command.WithdrawHold(payer, 500, Currency.CNY, 60_000, context)));
        Check.equal(500L, account(client, payer).debitsPending(), "held");
        ok(client, new Command(id(), new Command.WithdrawPost(hold)));
        CommandId hold2 = id();
        ok(client, new Command(hold2, new Command.WithdrawHold(payer, 300, Currency.CNY, 60_000, context)));
        ok(client, new Command(id(), new Command.WithdrawVoid(hold2)));
        Check.equal(Status.HOLD_ALREADY_VOIDED, client.execute(new Command(id(), new Command.WithdrawPost(hold2))).status(),
                "posting a voided hold");
        Check.equal(98_500L, account(client, payer).balance(), "after the holds");
        // Freeze, unfreeze, KYC tier.
        ok(client, new Command(id(), new Command.Freeze(payer)));
        Check.equal(AccountView.AccountStatus.FROZEN, account(client, payer).status(), "frozen");
        Check.equal(Status.ACCOUNT_FROZEN, client.execute(Command.transfer(id(), payer, merchant, 1, Currency.CNY)).status(),
                "paying from a frozen account");
        ok(client, new Command(id(), new Command.Unfreeze(payer)));
        ok(client, new Command(id(), new Command.SetKycTier(payer, 2)));
        Check.equal(2, account(client, payer).kycTier(), "tier");
        // QR merchant key and a payment through it; a refund of part of it.
        CommandId key = CommandId.of(0x1234_5678_9abcL);
        ok(client, new Command(id(), new Command.RegisterMerchantKey(merchant, key)));
        CommandId qrPayment = id();
        CommandId none = CommandId.of(0);
        ok(client, new Command(qrPayment, new Command.PayMerchantQr(payer, new CommandId[] {key, none, none, none}, 800, 0,
                Currency.CNY, 5812, context)));
        ok(client, new Command(id(), new Command.Refund(qrPayment, 300, Currency.CNY)));
        Check.equal(Status.REFUND_EXCEEDS_PAYMENT,
                client.execute(new Command(id(), new Command.Refund(qrPayment, 501, Currency.CNY))).status(), "refunding too much");
        // A user-presented payment code, charged by the merchant.
        long code = 281_234_567_890_123_456L;
        ok(client, new Command(id(), new Command.IssuePaymentCode(payer, code, 60_000)));
        ok(client, new Command(id(), new Command.ChargePaymentCode(merchant, code, 400, Currency.CNY, context)));
        Check.equal(Status.PAYMENT_CODE_USED,
                client.execute(new Command(id(), new Command.ChargePaymentCode(merchant, code, 400, Currency.CNY, context))).status(),
                "charging a code twice");
        // A budget, and the spending query.
        ok(client, new Command(id(), new Command.SetBudget(payer, Category.FOOD_AND_DRINK.code(), 100_000L)));
        QueryReply.Spending spending = (QueryReply.Spending) client.query(
                new Query.Spending(payer, 0, Category.FOOD_AND_DRINK.code()));
        Check.equal(100_000L, spending.budget(), "budget");
        Check.equal(900L, spending.spent(), "spent on food this month (QR 800 + code 400 - refund 300)");
        // FX: a rate, a floor, a quote, its conversion, a direct conversion.
        ok(client, new Command(id(), new Command.SetFxRate(Currency.CNY, Currency.JPY, new FxMid(2087, 2), 50, 600_000, "ECB")));
        ok(client, new Command(id(), new Command.SetFxFloor(Currency.JPY, 10_000_000)));
        CommandId quote = id();
        CommandResult quoted = client.execute(new Command(quote, new Command.FxQuote(FxOrder.pay(payer, jpy, 1_000), 60_000)));
        Check.equal(Status.OK, quoted.status(), "quote");
        Detail.FxAmounts amounts = ((Detail.FxConversion) quoted.detail()).amounts();
        Check.equal(1_000L, amounts.pay(), "the quote's pay");
        Check.equal(Currency.JPY, amounts.receiveCurrency(), "the quote's currency");
        Check.isTrue(amounts.expiresAt() > 0, "a quote expires");
        CommandResult converted = client.execute(new Command(id(), new Command.FxConvertQuote(quote, payer)));
        Check.equal(Status.OK, converted.status(), "convert the quote");
        Check.equal(amounts.receive(), ((Detail.FxConversion) converted.detail()).amounts().receive(), "as quoted");
        ok(client, new Command(id(), new Command.FxConvert(FxOrder.receive(payer, jpy, 100))));
        Check.equal(amounts.receive() + 100, account(client, jpy).balance(), "JPY received");
        QueryReply.FxRateView rate = ((QueryReply.FxRate) client.query(new Query.FxRate(0))).rate();
        Check.equal(Currency.CNY, rate.base(), "base");
        Check.equal(Currency.JPY, rate.quote(), "quote");
        Check.equal("20.87", rate.mid().toString(), "mid");
        Check.equal("ECB", rate.source(), "source");
        Check.equal(new QueryReply.Refused(Status.FX_RATE_UNKNOWN), client.query(new Query.FxRate(1)), "past the end");
        // Close an empty account.
        ok(client, Command.openCustomer(id(), 5003, 52, Currency.CNY, 0));
        ok(client, new Command(id(), new Command.Close(5003)));
        Check.equal(AccountView.AccountStatus.CLOSED, account(client, 5003).status(), "closed");
        // Queries without a policy in force.
        QueryReply.RiskPolicy policy = (QueryReply.RiskPolicy) client.query(new Query.RiskPolicy());
        Check.equal(32, policy.digest().length, "digest");
        QueryReply.RiskAudit audit = (QueryReply.RiskAudit) client.query(new Query.RiskAudit(payer, 0));
        Check.equal(0, audit.entries(), "no decision audited without rules");
        Check.equal(new QueryReply.Refused(Status.NOT_A_CUSTOMER), client.query(new Query.RiskAudit(merchant, 0)), "merchant");
    }

    static void bankCards(PayrailClient client) throws Exception {
        long account = 9001;
        long other = 9002;
        customer(client, account, 90, 0);
        customer(client, other, 91, 0);
        InstrumentId card = new InstrumentId(90, 1);
        InstrumentId bank = InstrumentId.parse("90/2");
        Check.equal("90/2", bank.toString(), "an instrument prints as owner/number");
        Check.equal(Optional.of(List.of()), client.instruments(account), "nothing bound yet");
        ok(client, new Command(id(), new Command.BindInstrument(account, 1, InstrumentKind.CARD, "tok_8f2k1", "ICBC",
                "CN", "4242", Currency.CNY)));
        ok(client, new Command(id(), new Command.BindInstrument(account, 2, InstrumentKind.BANK_ACCOUNT,
                "tok_acct_77", "Bank of China", "CN", "1234", Currency.CNY)));
        Check.equal(Status.INSTRUMENT_UNVERIFIED, client.execute(new Command(id(),
                new Command.DepositFrom(account, 5_000, Currency.CNY, card))).status(), "not verified yet");
        ok(client, new Command(id(), new Command.VerifyInstrument(card, true)));
        ok(client, new Command(id(), new Command.VerifyInstrument(bank, true)));
        ok(client, new Command(id(), new Command.DepositFrom(account, 5_000, Currency.CNY, card)));
        Check.equal(Status.INSTRUMENT_REQUIRED, client.execute(Command.deposit(id(), account, 1, Currency.CNY)).status(),
                "a top-up names an instrument once one is bound");
        Check.equal(Status.INSTRUMENT_NOT_YOURS, client.execute(new Command(id(),
                new Command.DepositFrom(other, 1, Currency.CNY, card))).status(), "another customer's card");
        CommandId hold = id();
        ok(client, new Command(hold, new Command.WithdrawHoldTo(account, 2_000, Currency.CNY, 60_000, RiskContext.NONE,
                bank)));
        // Unbound while the money is on its way: the withdrawal goes on.
        ok(client, new Command(id(), new Command.UnbindInstrument(bank)));
        ok(client, new Command(id(), new Command.WithdrawPost(hold)));
        Check.equal(Status.INSTRUMENT_UNBOUND, client.execute(new Command(id(), new Command.WithdrawHoldTo(account, 1,
                Currency.CNY, 60_000, RiskContext.NONE, bank))).status(), "an unbound account");
        Check.equal(3_000L, account(client, account).balance(), "balance");

        List<QueryReply.InstrumentView> views = client.instruments(account).orElseThrow();
        Check.equal(2, views.size(), "two instruments");
        QueryReply.InstrumentView first = views.get(0);
        Check.equal(card, first.instrument(), "number order");
        Check.equal(InstrumentKind.CARD, first.kind(), "kind");
        Check.equal(InstrumentState.VERIFIED, first.state(), "state");
        Check.equal("tok_8f2k1", first.token(), "token");
        Check.equal("ICBC", first.bank(), "bank");
        Check.equal("CN", first.country(), "country");
        Check.equal("4242", first.lastFour(), "last four");
        Check.equal(Currency.CNY, first.currency(), "currency");
        Check.equal(2, first.instrumentsTotal(), "total");
        Check.equal(InstrumentState.UNBOUND, views.get(1).state(), "unbound, remembered");
        Check.equal(Optional.empty(), client.instruments(9_999_999), "an unknown account");

        // The history names the instruments as they were.
        HistoryPage page = client.history(account, 10);
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (page.entries().size() < 2 && System.nanoTime() < deadline) {
            Thread.sleep(50);
            page = client.history(account, 10);
        }
        Check.equal(2, page.entries().size(), "a top-up and a withdrawal");
        Check.equal("Bank of China ****1234 (instrument 2)", String.valueOf(page.entries().get(0).instrument()),
                "the posted withdrawal's account");
        Check.equal(new MovementInstrument(1, "ICBC", "4242"), page.entries().get(1).instrument(),
                "the top-up's card");

        // A card number never leaves the client.
        Check.isTrue(CardNumbers.looksLikeCardNumber("4111-1111-1111-1111"), "a card number");
        Check.isTrue(!CardNumbers.looksLikeCardNumber("tok_9f8e7d6c5b4a"), "a token");
        Check.isTrue(!CardNumbers.looksLikeCardNumber("4111  1111 1111 1111"), "two spaces break a run");
        Check.isTrue(CardNumbers.looksLikeCardNumber("99411111111111111199"), "inside a longer run");
        try {
            new Command.BindInstrument(account, 3, InstrumentKind.CARD, "4111 1111 1111 1111", "ICBC", "CN", "1111",
                    Currency.CNY);
            throw new AssertionError("a card number as a token was accepted");
        } catch (IllegalArgumentException expected) {
            Check.isTrue(expected.getMessage().contains("looks like a full card number"), expected.getMessage());
        }
    }

    static void historyTxStatusBackup(PayrailClient client) throws Exception {
        customer(client, 6001, 60, 5_000);
        customer(client, 6002, 61, 0);
        CommandId transfer = id();
        ok(client, Command.transfer(transfer, 6001, 6002, 1_250, Currency.CNY));
        // History is written shortly after the acknowledgement.
        HistoryPage page = client.history(6001, 10);
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (page.entries().size() < 2 && System.nanoTime() < deadline) {
            Thread.sleep(50);
            page = client.history(6001, 10);
        }
        Check.equal(2, page.entries().size(), "deposit and transfer");
        Movement newest = page.entries().get(0);
        Check.equal(transfer, newest.command(), "newest first");
        Check.equal(-1_250L, newest.amount(), "amount");
        Check.equal(3_750L, newest.balance(), "balance after");
        Check.equal(6002L, newest.counterparty(), "counterparty");
        Check.equal("transfer", newest.kind(), "kind");
        Check.isTrue(page.isLast(), "one page");
        HistoryPage first = client.history(6001, 0, -1L, CommandId.of(0), 1);
        Check.equal(1, first.entries().size(), "a page of one");
        HistoryPage second = client.history(6001, 0, -1L, first.nextCursor(), 1);
        Check.equal("deposit", second.entries().get(0).kind(), "the next page");
        TxReply tx = client.tx(transfer);
        Check.equal(TxReply.Source.RECORD, tx.source(), "source");
        Check.equal(Status.OK, tx.status(), "status");
        Check.equal(2, tx.legs().size(), "a debit and a credit");
        Check.equal(TxReply.Source.UNKNOWN, client.tx(CommandId.of(Long.MAX_VALUE)).source(), "never seen");
        Map<String, Long> status = client.status();
        Check.isTrue(status.get("server.connections_open") >= 1, "status: " + status);
        Path backup = server.dir.resolve("backup-1");
        long sequence = client.backup(backup.toString());
        Check.isTrue(sequence > 0, "last sequence " + sequence);
        Check.isTrue(Files.isRegularFile(backup.resolve("gateway.toml")), "the backup holds the gateway file");
        PayrailException again = Check.fails(PayrailException.Kind.SERVER, () -> client.backup(backup.toString()),
                "a backup over an existing directory");
        Check.equal(ErrorCode.BACKUP_FAILED, again.errorCode(), "code");
        Check.isTrue(!again.outcomeUnknown(), "a refusal is a known outcome");
        Check.equal(3_750L, account(client, 6001).balance(), "the connection goes on after a refusal");
    }

    static void riskPolicy(PayrailClient client) throws Exception {
        customer(client, 8001, 80, 10_000);
        ok(client, Command.openMerchant(id(), 8101, 81, Currency.CNY, 5812));
        RiskPolicy policy = RiskPolicy.EMPTY.withBlockedCountries(
                new RiskPolicy.Response(RiskPolicy.Action.DECLINE, false), "KP");
        RiskPolicySet set = client.setRiskPolicy(policy);
        try {
            Check.equal(Status.OK, set.status(), "policy set");
            QueryReply.RiskPolicy inForce = (QueryReply.RiskPolicy) client.query(new Query.RiskPolicy());
            Check.equal(set.digest(), inForce.digest(), "the digest in force");
            Check.equal(java.util.Set.of(RiskRule.BLOCKED_COUNTRY), inForce.ruleSet(), "rules on");
            CommandResult declined = client.execute(
                    Command.transfer(id(), 8001, 8101, 100, Currency.CNY, RiskContext.of(1, "KP")));
            Check.equal(Status.RISK_DECLINED, declined.status(), "a payment from a blocked country");
            Detail.RiskDetail risk = ((Detail.Risk) declined.detail()).risk();
            Check.equal(Verdict.DECLINE, risk.verdict(), "verdict");
            Check.equal(RiskRule.BLOCKED_COUNTRY, risk.rule(), "rule");
            ok(client, Command.transfer(id(), 8001, 8101, 100, Currency.CNY, RiskContext.of(1, "CN")));
            QueryReply.RiskAudit audit = (QueryReply.RiskAudit) client.query(new Query.RiskAudit(8001, 0));
            Check.equal(1, audit.entries(), "one decision audited");
            Check.equal(RiskRule.BLOCKED_COUNTRY, audit.entry().rule(), "audited rule");
            Check.equal(100L, audit.entry().amount(), "audited amount");
        } finally {
            Check.equal(Status.OK, client.setRiskPolicy(RiskPolicy.EMPTY).status(), "policy removed");
        }
    }

    /** Runs the README's Java example against the test server (its address and data directory). */
    static void readmeExample(Path root) throws Exception {
        String readme = Files.readString(root.resolve("README.md"), StandardCharsets.UTF_8);
        int section = readme.indexOf("## Java client");
        Check.isTrue(section >= 0, "README.md has a section \"Java client\"");
        int start = readme.indexOf("```java\n", section);
        int end = readme.indexOf("```\n", start + 8);
        Check.isTrue(start >= 0 && end > start, "the section has a ```java block");
        String example = readme.substring(start + 8, end);
        Check.isTrue(example.contains("\"127.0.0.1:7400\"") && example.contains("\"payrail-data\""),
                "the example connects to 127.0.0.1:7400 with ./payrail-data");
        example = example.replace("\"127.0.0.1:7400\"", "\"" + server.addr + "\"")
                .replace("\"payrail-data\"", "\"" + server.dataDir.toString().replace("\\", "\\\\") + "\"");
        Path dir = Files.createTempDirectory(server.dir, "readme-");
        Path source = dir.resolve("Example.java");
        Files.writeString(source, example, StandardCharsets.UTF_8);
        Path jar = Path.of("build/payrail-client.jar").toAbsolutePath();
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process process = new ProcessBuilder(java.toString(), "-cp", jar.toString(), source.toString())
                .directory(dir.toFile())
                .redirectErrorStream(true)
                .start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int exit = process.waitFor();
        Check.equal(0, exit, "the example's exit code; its output:\n" + output);
        Check.equal("ok\nok\nok\nok\ninsufficient_funds\n8750\n", output, "what the example prints");
    }
}
