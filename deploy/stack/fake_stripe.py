"""The fake Stripe API of the local stack: localstripe, bound to 127.0.0.1, starting empty.

``python -m deploy.stack.fake_stripe --port P``

localstripe's own command line listens on every interface, and its store pickles itself to
``/tmp/localstripe.pickle`` after every write and reloads it at start. That file is shared by
every localstripe on the machine (two stacks would see each other's payments) and a kill in the
middle of a write leaves it corrupt. So this runner patches the store's ``try_load_from_disk`` and
``dump_to_disk`` to no-ops: each start begins from scratch and nothing is written to /tmp. The
payments of a stack therefore live only as long as its fake Stripe process; Postgres keeps the
bookings.
"""

from __future__ import annotations

import argparse
import logging

from deploy.stack.ports import HOST


def _no_persistence() -> None:
    from localstripe import resources

    def _skip(self: object) -> None:
        return None

    resources.Store.try_load_from_disk = _skip
    resources.Store.dump_to_disk = _skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=HOST)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _no_persistence()
    from aiohttp import web
    from localstripe.server import app

    web.run_app(app, host=args.host, port=args.port, access_log=logging.getLogger("aiohttp.access"))


if __name__ == "__main__":
    main()
