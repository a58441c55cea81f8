"""``python -m shipyard.cd.router``: run one environment's router in the foreground.

This is the process a supervisor runs. It imports no ORM and no other pillar, logs plain lines
to stderr, stops cleanly on SIGTERM or SIGINT (draining requests in flight), and exits 2 when
its options or files are unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from shipyard.cd.router.errors import RouterError
from shipyard.cd.router.proxy import ProxySettings
from shipyard.cd.router.server import Router, RouterConfig

EXIT_OK = 0
EXIT_UNUSABLE = 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The router's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.cd.router",
        description="Shipyard's traffic router for one environment.",
    )
    parser.add_argument("--env", required=True, help="the environment this router serves")
    parser.add_argument("--port", type=int, required=True, help="the public port")
    parser.add_argument("--host", default="127.0.0.1", help="the public address")
    parser.add_argument("--admin-port", type=int, default=0, help="the admin port (0: any)")
    parser.add_argument("--admin-host", default="127.0.0.1", help="the admin address (loopback)")
    parser.add_argument(
        "--state-dir", type=Path, help="the state directory (default: found like the CLI does)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=10.0, help="seconds to finish requests on stop"
    )
    parser.add_argument(
        "--upstream-timeout", type=float, default=60.0, help="seconds an upstream may be silent"
    )
    parser.add_argument(
        "--feedback-path",
        help="accept users' feedback (POST JSON) on this public path (default: off)",
    )
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop"
    )
    return parser.parse_args(argv)


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of event loops: uvloop when asked for or, with ``auto``, when installed."""
    if name in ("auto", "uvloop"):
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if name == "uvloop":
                raise RouterError("uvloop is not installed", hint="pip install uvloop") from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until it is signalled; return the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s router[{args.env}] %(levelname)s %(message)s",
    )
    try:
        state_root = args.state_dir or _locate_state_dir()
        config = RouterConfig(
            env=args.env,
            state_root=state_root,
            port=args.port,
            host=args.host,
            admin_port=args.admin_port,
            admin_host=args.admin_host,
            drain_timeout=args.drain_timeout,
            proxy=ProxySettings(
                upstream_timeout=args.upstream_timeout, feedback_path=args.feedback_path
            ),
        )
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            runner.run(_serve(config))
    except RouterError as error:
        sys.stderr.write(f"error: {error.message}\n")
        if error.hint:
            sys.stderr.write(f"  hint: {error.hint}\n")
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _locate_state_dir() -> Path:
    from shipyard.core.errors import StateDirError
    from shipyard.core.state import locate

    try:
        return locate().ensure().root
    except StateDirError as error:
        raise RouterError(error.message, hint=error.hint) from error


async def _serve(config: RouterConfig) -> None:
    router = Router(config)
    try:
        await router.start()
    except BaseException:
        await router.stop(grace=0)
        raise
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which would otherwise pause the data path for milliseconds.
    gc.collect()
    gc.freeze()
    await router.run_until_signalled()


if __name__ == "__main__":
    sys.exit(main())
