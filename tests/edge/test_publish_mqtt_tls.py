"""MQTT over TLS against a real mosquitto TLS listener, with certificates the test makes."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import MqttConfig, MqttTlsConfig
from edge.publish import PublishSetupError
from edge.publish.mqtt import MqttPublisher
from tests.edge.conftest import Broker, free_port
from tests.edge.test_publish_mqtt import BASE, CAM, Subscriber, make_cfg, make_event, wait_until

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(60)]


def openssl(*args: str | Path) -> None:
    r = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(map(str, args))}: {r.stderr}"


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def make_cert(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, crt, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    extfile.write_text(ext + "\nbasicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial", "-out", crt,
            "-days", "2", "-extfile", extfile)
    return key, crt


class Pki:
    """A CA, a broker certificate for 127.0.0.1 only, a client certificate, and an
    unrelated CA: made fresh by the test with the openssl CLI."""

    def __init__(self, d: Path) -> None:
        d.mkdir()
        self.ca = make_ca(d, "test-ca")
        self.other_ca = make_ca(d, "other-ca")
        self.server = make_cert(d, "broker", self.ca, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        self.client = make_cert(d, "client", self.ca, "extendedKeyUsage=clientAuth")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tls") / "pki")


def tls_broker(binary: str, workdir: Path, pki: Pki, require_certificate: bool = False) -> Broker:
    """The conftest Broker with its one listener switched to TLS."""
    broker = Broker(binary, workdir)
    lines = broker.conf.read_text().splitlines()
    # As root, mosquitto drops to user "mosquitto", who cannot read the test's 0700 tmp folders.
    lines += [f"user {pwd.getpwuid(os.getuid()).pw_name}",
              f"certfile {pki.server[1]}", f"keyfile {pki.server[0]}", f"cafile {pki.ca[1]}"]
    if require_certificate:
        lines += ["require_certificate true"]
    broker.conf.write_text("\n".join(lines) + "\n")
    broker.start()
    return broker


class TlsSubscriber(Subscriber):
    """The test's subscriber over TLS too (the broker has no plain listener)."""

    def __init__(self, port: int, topics: list[str], pki: Pki) -> None:
        self.pki = pki
        super().__init__(port, topics)

    def _connect(self, port: int) -> None:
        self.client.tls_set(ca_certs=str(self.pki.ca[1]), certfile=str(self.pki.client[1]),
                            keyfile=str(self.pki.client[0]))
        super()._connect(port)


def tls_cfg(port: int, tmp_path: Path, pki: Pki, tls: dict[str, object] | None = None, **kw: object) -> MqttConfig:
    """TLS on, trusting the test CA; `tls` adds keys of [mqtt.tls], `kw` keys of [mqtt]."""
    return make_cfg(port, tmp_path, tls=MqttTlsConfig(enabled=True, ca_file=str(pki.ca[1]), **tls or {}), **kw)


@pytest.fixture
def tls_mosquitto(mosquitto_binary: str, tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    broker = tls_broker(mosquitto_binary, tmp_path, pki)
    try:
        yield broker
    finally:
        broker.stop()


def test_tls_broker_gets_events_in_order_over_a_verified_connection(tls_mosquitto: Broker, tmp_path: Path,
                                                                   pki: Pki) -> None:
    sub = TlsSubscriber(tls_mosquitto.port, [f"{BASE}/events"], pki)
    pub = MqttPublisher(tls_cfg(tls_mosquitto.port, tmp_path, pki, username="u", password="hunter2"), ["drive"], camera_id=CAM)
    try:
        wait_until(lambda: pub.connected)
        for i in range(5):
            pub.publish_event(make_event(i))
        assert [e["frame_id"] for e in sub.wait_events(5)] == list(range(5))
        assert pub._client._ssl  # really TLS, not a plain fallback
    finally:
        pub.close()
        sub.close()


def test_tls_with_the_wrong_ca_never_connects_and_says_why(tls_mosquitto: Broker, tmp_path: Path, pki: Pki,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_cfg(tls_mosquitto.port, tmp_path, tls=MqttTlsConfig(enabled=True, ca_file=str(pki.other_ca[1])))
    with caplog.at_level(logging.ERROR, logger="edge.publish.mqtt"):
        pub = MqttPublisher(cfg, [], reconnect_min_s=1, reconnect_max_s=1, camera_id=CAM)
        try:
            pub.publish_event(make_event(0))
            wait_until(lambda: any("TLS handshake failed" in r.getMessage() for r in caplog.records))
            time.sleep(2.5)  # a few retries: still not connected, still one log line
            assert not pub.connected and pub.queue_depth == 1
        finally:
            pub.close()
    errors = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert len(errors) == 1, errors
    assert "certificate verify failed" in errors[0] or "unable to get local issuer certificate" in errors[0]
    assert "mqtt.tls.ca_file" in errors[0] and f"127.0.0.1:{tls_mosquitto.port}" in errors[0]


def test_tls_checks_the_broker_name_unless_insecure(tls_mosquitto: Broker, tmp_path: Path, pki: Pki,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The broker's certificate lists 127.0.0.1 only; "localhost" is a different name."""
    with caplog.at_level(logging.ERROR, logger="edge.publish.mqtt"):
        pub = MqttPublisher(tls_cfg(tls_mosquitto.port, tmp_path, pki, host="localhost"), [], camera_id=CAM)
        try:
            wait_until(lambda: any("TLS handshake failed" in r.getMessage() for r in caplog.records))
            assert not pub.connected
        finally:
            pub.close()
    msg = next(r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage())
    assert "mismatch" in msg and "mqtt.host" in msg and "mqtt.tls.insecure" in msg

    pub = MqttPublisher(tls_cfg(tls_mosquitto.port, tmp_path / "2", pki, {"insecure": True}, host="localhost"), [], camera_id=CAM)
    try:
        wait_until(lambda: pub.connected)
    finally:
        pub.close()


def test_tls_client_certificate_for_a_broker_that_requires_one(mosquitto_binary: str, tmp_path: Path,
                                                               pki: Pki) -> None:
    broker = tls_broker(mosquitto_binary, tmp_path, pki, require_certificate=True)
    try:
        pub = MqttPublisher(tls_cfg(broker.port, tmp_path / "a", pki), [], reconnect_min_s=1, reconnect_max_s=1, camera_id=CAM)
        try:
            time.sleep(1.5)
            assert not pub.connected  # no certificate: refused
        finally:
            pub.close()
        pub = MqttPublisher(tls_cfg(broker.port, tmp_path / "b", pki, {"cert_file": str(pki.client[1]),
                                                                  "key_file": str(pki.client[0])}), [], camera_id=CAM)
        try:
            wait_until(lambda: pub.connected)
        finally:
            pub.close()
    finally:
        broker.stop()


def test_tls_files_that_are_not_pem_are_named_at_start(tmp_path: Path, pki: Pki) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(PublishSetupError, match=r"mqtt\.tls\.ca_file"):
        MqttPublisher(make_cfg(free_port(), tmp_path, tls=MqttTlsConfig(enabled=True, ca_file=str(junk))), [], camera_id=CAM)
    with pytest.raises(PublishSetupError, match=r"mqtt\.tls\.cert_file"):
        MqttPublisher(tls_cfg(free_port(), tmp_path, pki, {"cert_file": str(junk), "key_file": str(pki.client[0])}), [], camera_id=CAM)


def test_an_encrypted_client_key_is_refused_without_prompting(tmp_path: Path, pki: Pki) -> None:
    enc = tmp_path / "client-enc.key"
    openssl("pkey", "-in", pki.client[0], "-out", enc, "-aes256", "-passout", "pass:secret")
    with pytest.raises(PublishSetupError, match=r"mqtt\.tls\.key_file is encrypted"):
        MqttPublisher(tls_cfg(free_port(), tmp_path, pki, {"cert_file": str(pki.client[1]), "key_file": str(enc)}), [], camera_id=CAM)
