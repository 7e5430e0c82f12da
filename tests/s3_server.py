"""moto's S3 server on loopback, for tests of stores on object storage.

tests/conftest.py registers the `s3` fixture for every test module; pyarrow's and
delta-rs's real S3 clients reach it through the usual AWS_* variables.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SECRET = "featstore-test-secret-key"


@dataclass(frozen=True)
class S3:
    endpoint: str  # host:port
    bucket: str

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 (a free port), credentials in the usual variables."""
    server_module = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install 'moto[server]')"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "featstore-test",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import pyarrow.fs as pafs

        bucket_maker = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
        )
        bucket_maker.create_dir("featstore-test")
        yield S3(f"127.0.0.1:{port}", "featstore-test")
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
