"""Forward (HTTPS_PROXY) mode: TLS is intercepted and recorded for model API hosts only."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.proxy import free_port
from tracetap.exporters.tracelab import iter_rows


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("api.anthropic.com"), x509.DNSName("tunnel.example")]
            ),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "up.pem", tmp / "up.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    loop = asyncio.new_event_loop()

    async def messages(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response(
            {
                "id": "msg_fwd",
                "type": "message",
                "role": "assistant",
                "model": "claude-fwd",
                "content": [{"type": "text", "text": "through the forward proxy"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 7, "output_tokens": 4},
            }
        )

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="tunnelled")

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/v1/messages", messages)
        app.router.add_get("/hello", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        return runner

    runner = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port, cert
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_forward_mode_intercepts_api_hosts_and_tunnels_others(
    tracetap_proxy, tls_upstream, mitm_confdir: Path
) -> None:
    port, upstream_cert = tls_upstream
    proxy = tracetap_proxy(
        forward=True,
        extra_args=[
            "--resolve",
            f"api.anthropic.com:443=127.0.0.1:{port}",
            "--resolve",
            f"tunnel.example:443=127.0.0.1:{port}",
            "--upstream-insecure",
        ],
    )
    proxy_url = f"http://127.0.0.1:{proxy.forward_port}"
    mitm_ca = mitm_confdir / "mitmproxy-ca-cert.pem"
    with httpx.Client(
        proxy=proxy_url, verify=ssl.create_default_context(cafile=str(mitm_ca)), timeout=30
    ) as client:
        resp = client.post(
            "https://api.anthropic.com/v1/messages",
            json={
                "model": "claude-fwd",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
        )
        assert resp.status_code == 200 and resp.json()["id"] == "msg_fwd"
    # Other hosts are tunnelled: the client sees the upstream's own certificate, not the CA's.
    with httpx.Client(
        proxy=proxy_url, verify=ssl.create_default_context(cafile=str(upstream_cert)), timeout=30
    ) as client:
        assert client.get("https://tunnel.example/hello").text == "tunnelled"
    with httpx.Client(
        proxy=proxy_url, verify=ssl.create_default_context(cafile=str(mitm_ca)), timeout=30
    ) as client:
        with pytest.raises(httpx.ConnectError):
            client.get("https://tunnel.example/hello")
    assert proxy.stop() == 0
    rows = list(iter_rows(proxy.db_url, kind="all"))
    assert [r["round_id"] for r in rows] == ["msg_fwd"]
    assert rows[0]["output_tokens"] == 4 and rows[0]["input_tokens_total"] == 7
