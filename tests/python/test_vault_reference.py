"""The vault's contract checked against an independent implementation:
BIP39 seeds with hashlib's PBKDF2, SLIP-0010 Ed25519 with hmac/hashlib, Ed25519
public keys, AES-256-GCM and OpenSSH key parsing with the `cryptography`
package, compared with what the `alknet` binary ($ALKNET_BIN) derives, seals
and serves."""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import queue
import signal
import socket
import ssl
import subprocess
import tempfile
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ABOUT = " ".join(["abandon"] * 11 + ["about"])
HARDENED = 0x80000000


def bip39_seed(mnemonic: str, passphrase: str = "") -> bytes:
    # BIP39: PBKDF2-HMAC-SHA512, 2048 rounds, salt "mnemonic" + passphrase
    # (ASCII here, so NFKD changes nothing).
    return hashlib.pbkdf2_hmac("sha512", mnemonic.encode(), ("mnemonic" + passphrase).encode(), 2048)


def slip10_ed25519(seed: bytes, path: str) -> tuple[bytes, bytes]:
    """(private key, chain code) at `path` (hardened components only)."""
    digest = hmac.new(b"ed25519 seed", seed, hashlib.sha512).digest()
    key, chain = digest[:32], digest[32:]
    parts = path.split("/")
    assert parts[0] == "m"
    for part in parts[1:]:
        assert part[-1] in "'h", f"SLIP-0010 ed25519 is hardened only: {part}"
        index = int(part[:-1]) | HARDENED
        digest = hmac.new(chain, b"\x00" + key + index.to_bytes(4, "big"), hashlib.sha512).digest()
        key, chain = digest[:32], digest[32:]
    return key, chain


def public_key(private: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def alknet_bin() -> str:
    path = os.environ.get("ALKNET_BIN")
    if not path:
        pytest.fail("ALKNET_BIN must point at the alknet binary (tests/run sets it)")
    return path


def alknet(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    result = subprocess.run(
        [alknet_bin(), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert result.returncode == 0, f"alknet {args}: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def about_dir():
    """A data directory restored from `abandon … about`, no passphrase."""
    with tempfile.TemporaryDirectory() as tmp:
        words = pathlib.Path(tmp) / "words"
        words.write_text(ABOUT + "\n")
        data = pathlib.Path(tmp) / "data"
        out = alknet(
            "init", "--data-dir", str(data), "--restore", "--mnemonic-file", str(words), "--no-passphrase"
        )
        yield data, out.stdout


def test_the_reference_implementation_matches_the_slip10_spec():
    # SLIP-0010 test vector 1 for ed25519, chain m/0H/1H/2H/2H/1000000000H.
    key, chain = slip10_ed25519(bytes(range(16)), "m/0'/1'/2'/2'/1000000000'")
    assert key.hex() == "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793"
    assert chain.hex() == "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230"
    assert public_key(key).hex() == "3c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a"
    # BIP39: the first official vector.
    assert bip39_seed(ABOUT, "TREZOR").hex().startswith("c55257c360c07c72029aebc1b53c05ed")


def test_abandon_about_identity_matches_the_binary(about_dir):
    data, init_out = about_dir
    seed = bip39_seed(ABOUT)
    identity, _ = slip10_ed25519(seed, "m/74'/0'/0'/0'")
    expected = public_key(identity).hex()
    # The constant the Rust tests hold (crates/alknet-vault/tests/vectors.rs, tests/vault.rs).
    assert expected == "e78c2766a792f09bfccb51493968ac322283e8d021a30063784d806929762ecc"
    assert f"node id: ed25519:{expected}" in init_out
    derived = alknet("vault", "derive", "m/74'/0'/0'/0'", "--public", "--data-dir", str(data))
    assert derived.stdout.strip() == expected
    private = alknet("vault", "derive", "m/74'/0'/0'/0'", "--data-dir", str(data))
    assert private.stdout.strip() == identity.hex()
    # Device keys and arbitrary hardened paths too.
    for path in ["m/74'/0'/0'/5'", "m/74h/0h/1h/0h", "m/0'", "m/74'/2'/0'/1'"]:
        key, _ = slip10_ed25519(seed, path)
        out = alknet("vault", "derive", path, "--public", "--data-dir", str(data))
        assert out.stdout.strip() == public_key(key).hex(), path


def test_the_ssh_host_key_file_is_the_derived_key(about_dir):
    data, _ = about_dir
    ssh_key, _ = slip10_ed25519(bip39_seed(ABOUT), "m/74'/0'/1'/0'")
    line = (data / "ssh_host_ed25519_key.pub").read_text()
    loaded = serialization.load_ssh_public_key(line.encode())
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == public_key(ssh_key)


def test_sealed_data_interoperates_both_ways(about_dir):
    data, _ = about_dir
    seed = bip39_seed(ABOUT)
    v2_key, _ = slip10_ed25519(seed, "m/74'/2'/0'/0'")
    v3_key, _ = slip10_ed25519(seed, "m/74'/2'/0'/1'")

    # Sealed here, opened by alknet.
    iv = os.urandom(12)
    blob = {
        "key_version": 2,
        "salt": base64.b64encode(os.urandom(32)).decode(),
        "iv": base64.b64encode(iv).decode(),
        "data": base64.b64encode(AESGCM(v2_key).encrypt(iv, "from python ✓".encode(), None)).decode(),
    }
    opened = alknet("vault", "decrypt", "--raw", "--data-dir", str(data), stdin=json.dumps(blob))
    assert opened.stdout == "from python ✓"

    # Sealed by alknet, opened here: the frozen format, field by field.
    sealed = alknet("vault", "encrypt", "--raw", "--data-dir", str(data), stdin="from alknet")
    blob = json.loads(sealed.stdout)
    assert sorted(blob) == ["data", "iv", "key_version", "salt"]
    assert blob["key_version"] == 2
    assert len(base64.b64decode(blob["salt"], validate=True)) == 32
    iv = base64.b64decode(blob["iv"], validate=True)
    assert len(iv) == 12
    body = base64.b64decode(blob["data"], validate=True)
    assert len(body) == len("from alknet") + 16
    assert AESGCM(v2_key).decrypt(iv, body, None) == b"from alknet"

    # Rotated to v3: the key of m/74'/2'/0'/1'.
    rotated = json.loads(
        alknet("vault", "rotate", "--to", "3", "--data-dir", str(data), stdin=sealed.stdout).stdout
    )
    assert rotated["key_version"] == 3
    plain = AESGCM(v3_key).decrypt(
        base64.b64decode(rotated["iv"]), base64.b64decode(rotated["data"]), None
    )
    assert plain == b"from alknet"

    # One flipped bit anywhere in iv or data: alknet refuses, exit status 1.
    for field in ["iv", "data"]:
        raw = bytearray(base64.b64decode(blob[field]))
        raw[len(raw) // 2] ^= 0x10
        tampered = dict(blob, **{field: base64.b64encode(bytes(raw)).decode()})
        result = alknet("vault", "decrypt", "--data-dir", str(data), stdin=json.dumps(tampered), check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == "error: decryption failed"
        assert result.stdout == ""


def test_the_served_certificate_carries_the_derived_identity(about_dir):
    data, _ = about_dir
    identity, _ = slip10_ed25519(bip39_seed(ABOUT), "m/74'/0'/0'/0'")
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    proc = subprocess.Popen(
        [alknet_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    try:
        port = None
        while True:
            line = lines.get(timeout=30)
            if line.startswith("listening on "):
                port = int(line.split()[2].rsplit(":", 1)[1])
            if line.startswith("serving:"):
                break
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["alknet/call"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        served = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert served == public_key(identity)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
