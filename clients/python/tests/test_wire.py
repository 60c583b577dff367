"""The codec against docs/protocol.md: its hex vectors (read from the
document, so a change of the wire format breaks these tests), its status
and error code tables, and frames a receiver must refuse."""

import re
import struct

import pytest

import payrail as p
from payrail import wire
from payrail._crc32c import crc32c
from payrail.errors import EncodeError, ProtocolError

from conftest import PROTOCOL_MD

DOCUMENT = PROTOCOL_MD.read_text(encoding="utf-8")
EXAMPLE_SECRET = b"example-secret"
NONCE = bytes(range(32))
PROMPTPAY_STATIC = "00020101021129370016A000000677010111011300669123456785802TH53037646304F1E3"


def document_vectors():
    """Each ```hex block after a `#### Vector: NAME` line, as bytes."""
    vectors = {}
    name = None
    lines = iter(DOCUMENT.splitlines())
    for line in lines:
        if line.startswith("#### Vector: "):
            name = line[len("#### Vector: ") :].strip()
        elif line.strip() == "```hex":
            assert name is not None, "a ```hex block without a `#### Vector:` line"
            hex_text = []
            for block_line in lines:
                if block_line.strip() == "```":
                    break
                hex_text.append(block_line.split("#", 1)[0])
            assert name not in vectors, f"vector {name} appears twice"
            vectors[name] = bytes.fromhex("".join("".join(hex_text).split()))
            name = None
    return vectors


VECTORS = document_vectors()

CONTEXT = p.RiskContext(
    device=42, latitude_centidegrees=3123, longitude_centidegrees=12147, country="CN"
)


def movement():
    return p.Movement(
        account=1001,
        counterparty=2002,
        command=2,
        sequence=9,
        timestamp=1_795_336_205_000_000_000,
        position=0,
        amount=-1250,
        balance=48750,
        currency=p.CNY,
        mcc=0,
        kind="transfer",
    )


def withdrawal_movement():
    """A withdrawal to a bank card, posted after the transfer."""
    return p.Movement(
        account=1001,
        counterparty=0xFF01_0000_0000_009C,
        command=3,
        sequence=10,
        timestamp=1_795_336_206_000_000_000,
        position=0,
        amount=-20_000,
        balance=28_750,
        currency=p.CNY,
        mcc=0,
        kind="withdraw_post",
        instrument=p.MovementInstrument(number=1, bank="ICBC", last_four="4242"),
    )


# What a gateway sends: (request id, kind, body) built by the client's encoders.
SENT = {
    "hello": lambda: (
        1,
        wire.Kind.HELLO,
        wire.encode_hello("gw-tokyo-1", wire.proof(EXAMPLE_SECRET, NONCE, "gw-tokyo-1")),
    ),
    "submit": lambda: (
        2,
        wire.Kind.SUBMIT,
        wire.encode_submit(
            [
                p.Deposit(id=1, account=1001, amount=50000, currency=p.CNY),
                p.Transfer(id=2, from_=1001, to=2002, amount=1250, currency=p.CNY, context=CONTEXT),
            ]
        ),
    ),
    "query": lambda: (3, wire.Kind.QUERY, wire.encode_query([p.BalanceQuery(1001)])),
    "submit_qr": lambda: (
        6,
        wire.Kind.SUBMIT_QR,
        wire.encode_submit_qr(
            [p.QrPayment(id=3, payer=1001, payload=PROMPTPAY_STATIC, amount=12500)]
        ),
    ),
    "status": lambda: (4, wire.Kind.STATUS, b""),
    "set_risk_policy": lambda: (
        7,
        wire.Kind.SET_RISK_POLICY,
        wire.encode_set_risk_policy(
            p.RiskPolicy(
                blocked_countries=p.BlockList(p.Response(p.Action.decline), ("KP",)),
                velocity=p.VelocityRule(
                    p.Response(p.Action.step_up), payments_max=10, window_ns=600_000_000_000
                ),
            )
        ),
    ),
    "history_query": lambda: (
        6,
        wire.Kind.HISTORY_QUERY,
        wire.encode_history_query(1001, 0, wire.U64_MAX, 0, 50),
    ),
    "tx_query": lambda: (7, wire.Kind.TX_QUERY, wire.encode_tx_query(2)),
    "backup": lambda: (8, wire.Kind.BACKUP, wire.encode_backup("/backups/payrail-1")),
}

# What a server sends: (request id, the message the client decodes).
RECEIVED = {
    "challenge": (0, p.Challenge(NONCE)),
    "welcome": (1, p.Limits(1_048_576, 8190, 64)),
    "results": (
        2,
        p.Results(
            [
                p.CommandResult(p.Status.ok),
                p.CommandResult(
                    p.Status.step_up_required,
                    risk=p.RiskDetail(p.Verdict.step_up, p.RuleId.new_device, 1, 42),
                ),
            ]
        ),
    ),
    "query_results": (
        3,
        p.QueryResults(
            [
                p.AccountView(
                    account=1001,
                    owner=77,
                    kind=p.AccountKind.customer,
                    currency=p.CNY,
                    status=p.AccountStatus.active,
                    kyc_tier=1,
                    mcc=0,
                    balance=50000,
                    debits_pending=0,
                    credits_pending=0,
                    available=50000,
                )
            ]
        ),
    ),
    "status_reply": (4, p.StatusReply({"connections": 3, "commands_total": 2})),
    "risk_policy_set": (
        7,
        p.RiskPolicySet(
            p.Status.ok,
            bytes.fromhex("2fce7a6453112b41103d265aa31e1ecf4f1d35ab992ac354875f22525fbe44c4"),
        ),
    ),
    "history_page": (6, p.HistoryPage([withdrawal_movement(), movement()], 0)),
    "tx_reply": (7, p.TxReply(p.TxSource.record, p.Status.ok, [movement()])),
    "backup_reply": (8, p.BackupReply(42)),
    "error": (
        5,
        p.ErrorReply(
            p.ErrorCode.batch_too_large, "submit batch of 8191 entries, at most 8190 allowed"
        ),
    ),
}


def test_every_document_vector_is_covered():
    assert set(VECTORS) == set(SENT) | set(RECEIVED)


@pytest.mark.parametrize("name", sorted(SENT))
def test_encoding_matches_the_document_vector(name):
    request_id, kind, body = SENT[name]()
    assert wire.frame(request_id, kind, body) == VECTORS[name]


@pytest.mark.parametrize("name", sorted(RECEIVED))
def test_decoding_the_document_vector(name):
    reader = wire.FrameReader()
    vector = VECTORS[name]
    # Byte by byte: a frame is only complete with its last byte.
    for byte in vector[:-1]:
        reader.feed(bytes([byte]))
        assert reader.next() is None
    reader.feed(vector[-1:])
    request_id, kind, body = reader.next()
    expected_id, expected = RECEIVED[name]
    assert request_id == expected_id
    assert wire.KIND_NAMES[kind] == name
    assert wire.decode_body(kind, body) == expected
    assert reader.buffer == bytearray()


def test_hello_vector_proof_answers_the_challenge_vector():
    challenge = wire.decode_body(wire.Kind.CHALLENGE, VECTORS["challenge"][32:])
    hello_body = VECTORS["hello"][32:]
    assert hello_body[-32:] == wire.proof(EXAMPLE_SECRET, challenge.nonce, "gw-tokyo-1")


def test_crc32c_check_values_in_the_document():
    assert "crc32c(b\"123456789\") = 0xe3069283" in DOCUMENT
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # Slicing by 8 and the byte loop agree on every alignment.
    data = bytes(range(256)) * 3
    for length in range(0, 40):
        running = 0
        for index in range(length):
            running = crc32c(data[index : index + 1], running)
        assert crc32c(data[:length]) == running


def test_crc32c_of_long_inputs_lanes_agree_with_the_byte_loop():
    import random

    from payrail import _crc32c

    rng = random.Random(5)
    threshold = _crc32c.VECTOR_BYTES_MIN
    for length in (threshold - 1, threshold, threshold + 255, 256 * 100 + 7, 500_000):
        data = rng.randbytes(length) if hasattr(rng, "randbytes") else bytes(
            rng.getrandbits(8) for _ in range(length)
        )
        for start in (0, 0x12345678):
            assert _crc32c._crc32c_lanes(data, start) == _crc32c._crc32c_sliced(data, start)
    assert _crc32c._crc32c_lanes(b"123456789" * 1000, 0) == _crc32c._crc32c_sliced(
        b"123456789" * 1000, 0
    )


def document_table(heading):
    section = DOCUMENT[DOCUMENT.index(heading) :]
    rows = []
    for line in section.splitlines()[1:]:
        match = re.match(r"\| +(\d+) \| `(\w+)` \| `(\w+)` \| (.*) \|$", line)
        if match:
            rows.append((int(match[1]), match[3], match[4]))
        elif rows and not line.startswith("|"):
            break
    return rows


def test_status_table_matches_the_document():
    rows = document_table("## Command statuses")
    assert len(rows) > 80
    assert [(int(s), s.name, s.describe()) for s in p.Status] == rows


def test_error_code_table_matches_the_document():
    rows = document_table("## Error codes")
    assert len(rows) > 20
    assert [(int(c), c.name, c.describe()) for c in p.ErrorCode] == rows


def test_command_sizes_match_the_document_table():
    """The "bytes with id" column of the Command table, per variant."""
    section = DOCUMENT[DOCUMENT.index("### Command") : DOCUMENT.index("### CommandResult")]
    documented = {
        int(match[1]): (match[2], int(match[3]))
        for match in re.finditer(r"^\| +(\d+) \| `(\w+)` \|.*\| (\d+) \|$", section, re.MULTILINE)
    }
    order = p.FxOrder(from_=1, to=2, amount=3)
    examples = [
        p.OpenAccount(1, 2, 3, p.AccountKind.customer, p.CNY),
        p.Deposit(1, 2, 3, p.CNY),
        p.Transfer(1, 2, 3, 4, p.CNY),
        p.WithdrawHold(1, 2, 3, p.CNY, 60_000),
        p.WithdrawPost(1, 2),
        p.WithdrawVoid(1, 2),
        p.Freeze(1, 2),
        p.Unfreeze(1, 2),
        p.Close(1, 2),
        p.SetKycTier(1, 2, 3),
        p.RegisterMerchantKey(1, 2, 3),
        p.PayMerchantQr(1, 2, (3,), 4, 0, p.CNY),
        p.IssuePaymentCode(1, 2, 3, 4),
        p.ChargePaymentCode(1, 2, 3, 4, p.CNY),
        p.Refund(1, 2, 3, p.CNY),
        p.SetBudget(1, 2, 3, 4),
        p.SetFxRate(1, p.CNY, p.JPY, p.FxMid(2087, 2), 50, 60_000, "ECB"),
        p.SetFxFloor(1, p.JPY, 5),
        p.FxQuote(1, order, 60_000),
        p.FxConvertQuote(1, 2, 3),
        p.FxConvert(1, order),
    ]
    assert [type(command) for command in examples] == list(p.types.COMMAND_KINDS)
    for variant, command in enumerate(examples):
        name, size = documented[variant]
        assert type(command).__name__ == name
        encoded = wire.encode_submit([command])[8:]
        assert struct.unpack_from("<I", encoded, 16)[0] == variant
        assert len(encoded) == size, name
    # The table counts SetBudget with a budget; without one it is 8 bytes shorter.
    assert len(wire.encode_submit([p.SetBudget(1, 2, 3, None)])) - 8 == documented[15][1] - 8


def frame_of(name):
    return bytearray(VECTORS[name])


def reseal(frame):
    """Fixes both checksums after a change."""
    struct.pack_into("<I", frame, 24, crc32c(bytes(frame[32:])))
    struct.pack_into("<I", frame, 28, crc32c(bytes(frame[:28])))


def refused(frame):
    reader = wire.FrameReader()
    reader.feed(bytes(frame))
    with pytest.raises(ProtocolError) as caught:
        request_id, kind, body = reader.next()
        wire.decode_body(kind, body)
    return str(caught.value)


def test_frames_a_receiver_refuses():
    frame = frame_of("results")
    frame[0:4] = b"PRL2"
    assert "magic" in refused(frame)

    frame = frame_of("results")
    frame[4] = 2
    assert "version" in refused(frame)

    frame = frame_of("results")
    frame[9] ^= 1
    assert "header checksum" in refused(frame)

    frame = frame_of("results")
    frame[-1] ^= 1
    assert "body checksum" in refused(frame)

    frame = frame_of("results")
    struct.pack_into("<I", frame, 20, 1)
    reseal(frame)
    assert "reserved" in refused(frame)

    frame = frame_of("results")
    struct.pack_into("<H", frame, 6, 99)
    reseal(frame)
    assert "unknown message kind" in refused(frame)

    frame = frame_of("results")
    struct.pack_into("<I", frame, 16, 2 << 20)
    reseal(frame)
    assert "at most" in refused(frame)

    # An unknown status code (999) in an intact frame.
    frame = frame_of("results")
    struct.pack_into("<H", frame, 40, 999)
    reseal(frame)
    assert "unknown Status code 999" in refused(frame)

    # Bytes after the message.
    frame = frame_of("backup_reply") + b"\0"
    struct.pack_into("<I", frame, 16, 9)
    reseal(frame)
    assert "after the message" in refused(frame)

    # A batch length the body cannot hold.
    frame = frame_of("results")
    struct.pack_into("<Q", frame, 32, 1_000)
    reseal(frame)
    assert "more than the bytes left hold" in refused(frame)


def test_values_out_of_range_are_refused_before_sending():
    with pytest.raises(EncodeError):
        wire.encode_submit([p.Deposit(1, 1001, -5, p.CNY)])
    with pytest.raises(EncodeError):
        wire.encode_submit([p.Deposit(1 << 128, 1001, 5, p.CNY)])
    with pytest.raises(EncodeError):
        wire.encode_submit([p.Transfer(1, 1, 2, 3, p.CNY, p.RiskContext(country="CHN"))])
    with pytest.raises(EncodeError):
        wire.encode_hello("g" * 65, bytes(32))
    with pytest.raises(EncodeError):
        wire.encode_submit_qr([p.QrPayment(1, 2, "0" * 2049)])


def test_instrument_commands_have_the_documented_sizes():
    card = p.InstrumentId(7, 1)
    sizes = [
        (p.BindInstrument(1, 1001, 1, p.InstrumentKind.card, "tok", "ICBC", "CN", "4242", p.CNY), 92),
        (p.VerifyInstrument(1, card, True), 33),
        (p.UnbindInstrument(1, card), 32),
        (p.DepositFrom(1, 1001, 5, p.CNY, card), 50),
        (p.WithdrawHoldTo(1, 1001, 5, p.CNY, 60_000, card), 73),
    ]
    for command, size in sizes:
        body = wire.encode_submit([command])
        assert len(body) == 8 + size, command
    # The kind's variant, then the instrument at the end (owner u64, number u32).
    body = wire.encode_submit([p.WithdrawHoldTo(1, 1001, 5, p.CNY, 60_000, card)])
    assert body[8 + 16 : 8 + 20] == (25).to_bytes(4, "little")
    assert body[-12:] == (7).to_bytes(8, "little") + (1).to_bytes(4, "little")


def test_card_numbers_are_refused_before_sending():
    # The engine's table (engine/src/instrument.rs).
    for text in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "pan=378282246310005;",
        "99411111111111111199",
        "4222222222222",
        "6011000990139424000",
    ]:
        assert wire.looks_like_card_number(text), text
    for text in [
        "tok_9f8e7d6c5b4a",
        "2026120709081234",
        "1111111111111111",
        "411111111113",
        "4111  1111 1111 1111",
        "ICBC",
        "",
    ]:
        assert not wire.looks_like_card_number(text), text
    bad = [
        dict(token="tok_4111111111111111"),
        dict(bank="4111 1111 1111 1111"),
        dict(token=""),
        dict(token="x" * 33),
        dict(bank=" ICBC"),
        dict(country="cn"),
        dict(last_four="42a2"),
    ]
    for change in bad:
        fields = dict(token="tok", bank="ICBC", country="CN", last_four="4242")
        fields.update(change)
        command = p.BindInstrument(1, 1001, 1, p.InstrumentKind.card, currency=p.CNY, **fields)
        with pytest.raises(p.EncodeError):
            wire.encode_submit([command])


def test_instrument_views_and_movement_instruments_decode():
    view = (
        (7).to_bytes(4, "little")
        + (9).to_bytes(8, "little")
        + (2).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + b"tok_1".ljust(32, b"\0")
        + b"ICBC".ljust(16, b"\0")
        + b"CN"
        + b"4242"
        + (156).to_bytes(2, "little")
        + (1).to_bytes(4, "little")
        + (10).to_bytes(8, "little")
        + (11).to_bytes(8, "little")
        + bytes([2])
    )
    body = (1).to_bytes(8, "little") + view
    (reply,) = wire.decode_body(wire.Kind.QUERY_RESULTS, body).replies
    assert reply == p.InstrumentView(
        p.InstrumentId(9, 2),
        p.InstrumentKind.bank_account,
        "tok_1",
        "ICBC",
        "CN",
        "4242",
        p.CNY,
        p.InstrumentState.verified,
        10,
        11,
        2,
    )
    # A movement whose instrument's digits are not digits is malformed.
    good = VECTORS["history_page"][32:]  # the body, after the 32-byte header
    page = wire.decode_body(wire.Kind.HISTORY_PAGE, good)
    assert str(page.entries[0].instrument) == "ICBC ****4242 (instrument 1)"
    assert page.entries[1].instrument is None
    broken = good.replace(b"4242", b"42x2", 1)
    with pytest.raises(p.ProtocolError):
        wire.decode_body(wire.Kind.HISTORY_PAGE, broken)
