"""The `serve` verb: rebuild reports/index.html and preview the site on localhost (harness/site.py does the work)."""
from __future__ import annotations

import argparse

from harness.commands.base import UsageError, Verb
from harness.history import DEFAULT_DB


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", default="reports", help="published reports folder (default reports)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"history database for the trend charts, if it exists "
                                                         f"(default {DEFAULT_DB})")
    p.add_argument("--build-only", action="store_true", help="write index.html and exit without serving")


def handle(args: argparse.Namespace) -> int:
    from harness.site import build_index, serve
    try:
        if args.build_only:
            print(f"site index: {build_index(args.reports, args.db)}")
            return 0
        server = serve(args.reports, args.port, args.host, args.db)
    except (FileNotFoundError, OSError) as e:
        raise UsageError(f"serve: {e}") from None
    host, port = server.server_address[:2]
    print(f"serving {args.reports} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


VERB = Verb(add_arguments=add_arguments, handler=handle, example="nanochat-bench serve --port 8000",
            description="Rebuild the site index (reports/index.html) and serve the reports folder on localhost.")
