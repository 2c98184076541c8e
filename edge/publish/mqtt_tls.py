"""MQTT over TLS: the SSL context from [mqtt.tls], and handshake failures in config keys.

paho-mqtt 2.x takes the context through Client.tls_set_context() and the host-name switch
through tls_insecure_set(); building the context here (rather than tls_set()) is what lets
a failed handshake be reported: see _reporting_socket_class.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from edge.config import MqttTlsConfig
from edge.publish import PublishSetupError


def _reporting_socket_class(report: Callable[[BaseException], None]) -> type[ssl.SSLSocket]:
    """An SSLSocket that hands its handshake error to `report` before raising it.

    paho swallows the exception of a failed (re)connect (on_connect_fail gets no reason),
    and "unreachable" is the wrong thing to tell someone whose CA file is wrong.
    SSLContext.sslsocket_class is the stdlib's hook for exactly this.
    """

    class ReportingSSLSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            try:
                super().do_handshake(block)
            except (OSError, ValueError) as exc:  # SSLError, CertificateError, timeouts
                report(exc)
                raise

    return ReportingSSLSocket


def _no_key_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's
    # passphrase, and a service has no terminal: it would hang or fail obscurely.
    raise PublishSetupError("mqtt.tls.key_file is encrypted (needs a passphrase); give an unencrypted "
                            "key, e.g. `openssl pkey -in KEY -out KEY.plain`, readable only by car-detector")


def tls_context(tls: MqttTlsConfig, report: Callable[[BaseException], None]) -> ssl.SSLContext:
    """Verify the broker against tls.ca_file (or the system CAs); present a client
    certificate when one is configured. Bad files are named by their config key."""
    key = "mqtt.tls.ca_file"
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file or None)  # CERT_REQUIRED, names checked
        if tls.cert_file:
            key = "mqtt.tls.cert_file" if not tls.key_file else "mqtt.tls.cert_file/key_file"
            ctx.load_cert_chain(tls.cert_file, tls.key_file or None, password=_no_key_password)
    except ssl.SSLError as exc:
        raise PublishSetupError(f"{key}: not a usable PEM certificate/key ({exc.reason or exc}); "
                                "give the PEM files the broker's CA and client certificate came in") from None
    except OSError as exc:
        raise PublishSetupError(f"{key}: cannot read it ({exc.strerror or exc})") from None
    ctx.sslsocket_class = _reporting_socket_class(report)
    return ctx


def explain_tls_error(exc: BaseException) -> str:
    """What a failed handshake most likely means, in config keys."""
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) and "mismatch" in (exc.verify_message or text):
        return (f"certificate verify failed ({exc.verify_message or text}): the broker's certificate does not name mqtt.host; connect by a "
                "name it lists, or set mqtt.tls.insecure = true to skip only this check")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"certificate verify failed ({exc.verify_message or text}): the broker's certificate is not signed by the CA in "
                "mqtt.tls.ca_file (or the system's CAs when it is empty); point mqtt.tls.ca_file at "
                "the CA that signed it")
    if "WRONG_VERSION_NUMBER" in text.upper().replace(" ", "_"):
        return f"{text}: mqtt.port does not speak TLS; use the broker's TLS listener (usually 8883)"
    if "CERTIFICATE_REQUIRED" in text.upper().replace(" ", "_") or "alert" in text:
        return (f"{text}: the broker refused the TLS session; if it requires a client certificate, "
                "set mqtt.tls.cert_file and mqtt.tls.key_file")
    return text
