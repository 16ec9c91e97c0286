"""CURVE security for the routers and their peers (pyzmq's ``zmq.auth``).

Binding beyond loopback without keys is refused; ``aitrados keygen`` makes the keys.
inproc peers live inside the middleware's process and are trusted (libzmq does not run a
security handshake on inproc); ipc and tcp peers must present keys once CURVE is on.
"""

from __future__ import annotations

import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .settings import BusSettings
from .addresses import is_loopback
from .errors import BusError


class SecurityError(BusError, RuntimeError):
    """The bus configuration is unsafe or its keys are unusable."""


def curve_enabled(bus: BusSettings) -> bool:
    """True when the router has a CURVE secret key configured."""
    return bool(bus.curve_secret_key_file)


def check_bind_safety(bus: BusSettings) -> None:
    """Refuse a tcp bind beyond loopback unless CURVE keys are configured.

    Raises ``SecurityError`` with the commands that fix it.
    """
    if bus.enable_tcp and not is_loopback(bus.host) and not curve_enabled(bus):
        raise SecurityError(
            f"refusing to bind tcp on {bus.host!r} without CURVE keys: anyone on that network could "
            "call services and read the bus. Make keys with `aitrados keygen --dir KEYS` and set "
            "AITRADOS_BUS__CURVE_SECRET_KEY_FILE=KEYS/server.key_secret (clients: "
            "AITRADOS_BUS__CURVE_PUBLIC_KEY_FILE=KEYS/server.key and "
            "AITRADOS_BUS__CURVE_CLIENT_SECRET_KEY_FILE=KEYS/client.key_secret), "
            "or bind to 127.0.0.1 (AITRADOS_BUS__HOST)."
        )


def _load(path: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    p = Path(path)
    if not p.is_file():
        raise SecurityError(f"CURVE key file {p} does not exist; make keys with `aitrados keygen --dir DIR`")
    public, secret = zmq.auth.load_certificate(p)
    if need_secret and not secret:
        raise SecurityError(f"{p} holds no secret key; point the setting at the *.key_secret file")
    return public, secret


#: Folder, beside the server's key files, of the client public keys the router accepts.
AUTHORIZED_DIR = "authorized"


def make_keys(directory: str | Path, force: bool = False) -> dict[str, Path]:
    """Create a server and a client key pair in *directory* and authorize the client.

    The client's public key is copied to ``<directory>/authorized/``, the allow-list a router
    reads by default. Returns the paths of the four key files and of the allow-list folder.

    :raises SecurityError: when key files exist already and *force* is false (overwriting a
        server key locks out every client holding the old public key)
    """
    d = Path(directory)
    names = [f"{n}.{ext}" for n in ("server", "client") for ext in ("key", "key_secret")]
    existing = [d / n for n in names if (d / n).exists()]
    if existing and not force:
        raise SecurityError(f"{', '.join(map(str, existing))} exist already; refusing to overwrite keys that "
                            "clients may hold (pass --force to replace them, or choose another --dir)")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    out: dict[str, Path] = {}
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(d, name)
        Path(secret).chmod(0o600)
        out[f"{name}_public"] = Path(public)
        out[f"{name}_secret"] = Path(secret)
    allowed = d / AUTHORIZED_DIR
    allowed.mkdir(exist_ok=True, mode=0o700)
    (allowed / "client.key").write_bytes(out["client_public"].read_bytes())
    out["authorized_dir"] = allowed
    return out


def authorized_dir(bus: BusSettings) -> Path | None:
    """The allow-list folder of client public keys: the setting, else ``authorized/`` beside the
    server key; None when ``curve_allow_any_client`` is on."""
    if bus.curve_allow_any_client:
        return None
    if bus.curve_authorized_dir:
        return Path(bus.curve_authorized_dir)
    return Path(bus.curve_secret_key_file or ".").parent / AUTHORIZED_DIR


def apply_server(sock: zmq.Socket, bus: BusSettings) -> None:
    """Make *sock* a CURVE server if keys are configured (no-op otherwise)."""
    if not curve_enabled(bus):
        return
    public, secret = _load(bus.curve_secret_key_file or "", need_secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def apply_client(sock: zmq.Socket, bus: BusSettings, address: str) -> None:
    """Give *sock* client keys when the router uses CURVE and *address* is not inproc."""
    if address.startswith("inproc://") or not (bus.curve_public_key_file or curve_enabled(bus)):
        return
    server_file = bus.curve_public_key_file or bus.curve_secret_key_file or ""
    server_public, _ = _load(server_file, need_secret=False)
    if not bus.curve_client_secret_key_file:
        raise SecurityError(
            "the router uses CURVE: set AITRADOS_BUS__CURVE_CLIENT_SECRET_KEY_FILE to a client "
            "secret certificate (client.key_secret from `aitrados keygen`)"
        )
    public, secret = _load(bus.curve_client_secret_key_file, need_secret=True)
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def _start_zap(ctx: zmq.Context, wait: float = 5.0) -> ThreadAuthenticator:
    """Start a ZAP authenticator; returns it. A middleware stopped a moment ago in this process may
    still hold the ZAP endpoint (libzmq closes sockets in the background): retry for *wait* seconds."""
    deadline = time.monotonic() + wait
    while True:
        auth = ThreadAuthenticator(ctx)
        try:
            auth.start()
            return auth
        except zmq.ZMQError as exc:
            zap = getattr(auth, "zap_socket", None)
            if zap is not None:
                zap.close(0)
            if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def start_authenticator(ctx: zmq.Context, bus: BusSettings) -> ThreadAuthenticator | None:
    """Start the ZAP authenticator for CURVE; returns it, or None when CURVE is off.

    Only client keys in the allow-list folder (:func:`authorized_dir`) may connect, unless
    ``curve_allow_any_client`` is set.

    :raises SecurityError: when the allow-list folder is missing or holds no public key
    """
    if not curve_enabled(bus):
        return None
    allowed = authorized_dir(bus)
    if allowed is not None and (not allowed.is_dir() or not any(allowed.glob("*.key"))):
        raise SecurityError(
            f"CURVE is on but the client allow-list {allowed} is missing or holds no *.key file: copy each "
            "client's public key (client.key from `aitrados keygen`) there, point "
            "AITRADOS_BUS__CURVE_AUTHORIZED_DIR at such a folder, or accept any client key with "
            "AITRADOS_BUS__CURVE_ALLOW_ANY_CLIENT=true")
    auth = _start_zap(ctx)
    auth.configure_curve(domain="*", location=str(allowed) if allowed is not None else zmq.auth.CURVE_ALLOW_ANY)
    return auth
