"""``python -m app --port PORT``: run the example service until SIGTERM or SIGINT.

On either signal it drains (requests in flight finish, idle connections close) and exits 0.
It exits 2 when a setting or the address is unusable, with one line saying why.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from app.server import AppServer, Settings, SettingsError

EXIT_OK = 0
EXIT_UNUSABLE = 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The service's command line."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until signalled; return the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        sys.stderr.write(f"webapp: error: {error}\n")
        return EXIT_UNUSABLE
    try:
        server = AppServer((args.host, args.port), settings)
    except OSError as error:
        sys.stderr.write(f"webapp: error: cannot listen on {args.host}:{args.port}: {error}\n")
        return EXIT_UNUSABLE

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    accepting = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="accept"
    )
    accepting.start()
    sys.stderr.write(
        f"webapp: version {settings.version} listening on http://{args.host}:{server.port}\n"
    )
    sys.stderr.flush()
    while not stop.wait(0.5):
        pass
    sys.stderr.write("webapp: stopping: finishing requests in flight\n")
    sys.stderr.flush()
    server.drain()
    accepting.join()
    sys.stderr.write("webapp: stopped\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
