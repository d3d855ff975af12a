"""A moto server in a process of its own, as the tool meets AWS: elsewhere, not in the tool's process.

In the tool's process (`bench.common.moto_server`) moto's work and the tool's share one interpreter lock, so
steps running at once cannot overlap anything: every call is answered one at a time by the same thread of
Python that makes it. AWS answers from elsewhere; here a second process answers (with the same emulation of
AWS's behaviour that the in-process server installs), and the tool's threads overlap the emulator's work.

Run by `bench.common.moto_server(..., own_process=True)`: `python -m bench.emulator PORT`; it prints "ready" once
it listens, and stops when its standard input closes (its parent ended).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.server import ThreadedMotoServer

from tests import s3_emulation
from tests.ecs_emulation import keep_service_settings


def main(port: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    keep_service_settings()
    s3_emulation.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the parent closes it (or ends)
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]))
