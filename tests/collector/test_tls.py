"""TLS in a production-mode stack: the bundle carries the broker's CA and its TLS port, and an
edge agent given that bundle's values delivers over TLS, verified, and is acknowledged; the
collector serves its API over HTTPS with its own certificate; plaintext CoAP is an opt-in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiocoap
import aiocoap.error
import httpx
import pytest

from collector import tls
from tests.collector.auth.stack import readings_count, secured_stack
from tests.edge.agent_process import spool_snapshot, start_agent
from tests.support.net import wait_for
from tests.support.processes import start_collector


def test_an_agent_with_only_a_tls_bundle_delivers_over_tls(tmp_path: Path) -> None:
    with secured_stack(tmp_path / "stack", tls=True) as stack:
        bundle = stack.provision("gw-tls", sensors=[{"sensor_id": "sim-0", "label": "Fridge"}])
        mqtt = bundle["mqtt"]
        assert mqtt["tls"] is True
        assert mqtt["port"] == stack.broker.tls_port != stack.broker.port
        assert mqtt["ca"] == (stack.workdir / "tls" / tls.CA_CERT).read_text()
        spool = tmp_path / "spool.db"
        agent = start_agent(
            spool,
            mqtt["port"],
            # The bundle's values, as the agent reads them from the bundle file.
            device_id=bundle["device_id"],
            mqtt_host=mqtt["host"],
            mqtt_username=mqtt["username"],
            mqtt_password=mqtt["password"],
            mqtt_tls=True,
            mqtt_ca=mqtt["ca"],
            simulate=1,
            sample_period_s=0.2,
            shutdown_drain_s=20,
        )
        try:
            wait_for(lambda: readings_count(stack.database_url, "gw-tls") >= 5, 30, what="rows")
            agent.stop(timeout_s=30)
            final = spool_snapshot(spool)
            assert final["rows"] == [] and final["batches"] == 0, agent.log()[-2000:]
        finally:
            agent.kill()


def test_the_collector_serves_https_verified_by_its_ca(
    fresh_database_url: str, tmp_path: Path
) -> None:
    files = tls.init(tmp_path / "tls", ["127.0.0.1"])
    collector = start_collector(
        fresh_database_url,
        None,
        http_tls_cert_file=files.server_cert,
        http_tls_key_file=files.server_key,
        http_ca_file=str(files.ca_cert),
    )
    try:
        assert collector.url.startswith("https://")
        assert (
            httpx.get(
                collector.url + "/readyz", verify=tls.client_context(files.ca_cert)
            ).status_code
            == 200
        )
        # A client that does not trust the installation's CA refuses the server.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(collector.url + "/readyz")
        # Plaintext HTTP to the HTTPS port gets no answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{collector.http_port}/readyz", timeout=5)
    finally:
        collector.stop()


def _coap_post(port: int, timeout_s: float = 10) -> aiocoap.Message:
    async def post() -> aiocoap.Message:
        context = await aiocoap.Context.create_client_context()
        try:
            uri = f"coap://127.0.0.1:{port}/tw/v1/gw-coap/readings?t=x"
            request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=b"{}")
            return await asyncio.wait_for(context.request(request).response, timeout_s)
        finally:
            await context.shutdown()

    return asyncio.run(post())


def test_plaintext_coap_listens_only_when_explicitly_allowed(fresh_database_url: str) -> None:
    collector = start_collector(fresh_database_url, None, coap_plaintext_allowed=False)
    try:
        # No listener: the request fails (port unreachable or no answer), it is never served.
        with pytest.raises((aiocoap.error.Error, TimeoutError)):
            _coap_post(collector.coap_port, timeout_s=3)
        assert "CoAP not started" in collector.log()
    finally:
        collector.stop()
    allowed = start_collector(fresh_database_url, None, coap_plaintext_allowed=True)
    try:
        assert _coap_post(allowed.coap_port).code == aiocoap.UNAUTHORIZED
    finally:
        allowed.stop()
