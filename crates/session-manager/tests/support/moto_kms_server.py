"""moto's KMS server for the session manager's tests, with key material that survives a
restart.

Usage: python moto_kms_server.py STATE_DIR [moto_server options, e.g. -H 127.0.0.1 -p PORT]

moto keeps its state in memory, so a restarted moto has forgotten every key, while a real
KMS key outlives any outage. To test recovery from an outage, this launcher stores the
private key of the n-th asymmetric key created for each key spec in STATE_DIR and gives a
later run's n-th key of that spec the same material. A test that re-creates its key after
a restart (and points its alias at it again) therefore gets back the very key the service
has published, as it would from AWS.
"""

import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from moto.kms import models
from moto.server import main

ASYMMETRIC_PREFIXES = ("RSA_", "ECC_")


def durable_private_keys(state_dir: Path, generate):
    created_per_spec: dict[str, int] = {}

    def generate_private_key(key_spec: str):
        key = generate(key_spec)
        if not key_spec.startswith(ASYMMETRIC_PREFIXES):
            return key
        index = created_per_spec.get(key_spec, 0)
        created_per_spec[key_spec] = index + 1
        path = state_dir / f"{key_spec}-{index}.pem"
        if path.exists():
            key.private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        else:
            path.write_bytes(
                key.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return key

    return generate_private_key


if __name__ == "__main__":
    state = Path(sys.argv[1])
    state.mkdir(parents=True, exist_ok=True)
    models.generate_private_key = durable_private_keys(state, models.generate_private_key)
    main(sys.argv[2:])
