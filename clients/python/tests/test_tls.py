"""TLS (the asyncio client, the ssl module) against a real `payrail serve`
with ``[tls]`` on: certificates made for the test with the openssl command
(a CA, the server's certificate for 127.0.0.1, a client CA and a client
certificate)."""

import asyncio
import subprocess

import pytest

import payrail as p
from payrail.aio import AsyncClient

from conftest import Server


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def authority(directory, name):
    """A CA: NAME.pem and NAME.key."""
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
        cwd=directory,
    )


def issue(directory, ca, name, extensions):
    """A certificate NAME.pem / NAME.key signed by the CA ``ca``."""
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr",
        cwd=directory,
    )
    (directory / f"{name}.ext").write_text(extensions)
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=directory,
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A server that speaks TLS only and asks for a client certificate."""
    directory = tmp_path_factory.mktemp("payrail-tls")
    authority(directory, "server-ca")
    issue(
        directory, "server-ca", "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    authority(directory, "client-ca")
    issue(directory, "client-ca", "gateway", "extendedKeyUsage=clientAuth\n")
    authority(directory, "stranger-ca")
    config = directory / "server.toml"
    config.write_text(
        "[tls]\n"
        "enabled = true\n"
        f'certificate = "{directory / "server.pem"}"\n'
        f'private_key = "{directory / "server.key"}"\n'
        f'client_ca = "{directory / "client-ca.pem"}"\n'
    )
    running = Server(directory, extra_args=["--config", str(config)]).start()
    running.certificates = directory
    yield running
    running.stop()


def test_submit_and_query_over_tls_with_a_client_certificate(tls_server, new_account):
    files = tls_server.certificates
    context = p.tls_context(files / "server-ca.pem", files / "gateway.pem", files / "gateway.key")

    async def scenario():
        client = await AsyncClient.local(tls_server.addr, tls_server.data_dir, tls=context)
        async with client:
            account = new_account()
            results = await client.submit(
                [
                    p.OpenAccount(p.new_id(), account, account, p.AccountKind.customer, p.CNY, kyc_tier=1),
                    p.Deposit(p.new_id(), account, 2_500, p.CNY),
                ]
            )
            assert all(result.ok for result in results)
            assert (await client.balance(account)).balance == 2_500
            assert (await client.status())["server.connections_open"] >= 1

    run(scenario())


def test_without_a_client_certificate_or_trust_or_tls_there_is_no_connection(tls_server):
    files = tls_server.certificates
    refusals = [
        # The server asks for a client certificate and gets none.
        (dict(tls=p.tls_context(files / "server-ca.pem")), "certificate required"),
        # The client does not trust the server's CA.
        (
            dict(tls=p.tls_context(files / "stranger-ca.pem", files / "gateway.pem", files / "gateway.key")),
            "certificate verify failed",
        ),
        # Plain TCP to a TLS server: no Challenge ever comes.
        (dict(connect_timeout=2.0), "no answer within 2 s"),
    ]

    async def scenario():
        for options, reason in refusals:
            with pytest.raises(p.ConnectError, match=reason):
                await AsyncClient.local(
                    tls_server.addr, tls_server.data_dir, connect_attempts=1, **options
                )

    run(scenario())


def test_the_blocking_client_says_it_has_no_tls(tls_server):
    context = p.tls_context(tls_server.certificates / "server-ca.pem")
    with pytest.raises(p.ConnectError, match="AsyncClient"):
        tls_server.client(tls=context, connect_attempts=1)
