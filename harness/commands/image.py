"""``ratchet image build``: the docker node image, built offline from this host's Debian packages, cached.

How the image is made and why (a minimal root with the host's /usr bind-mounted
read-only, rather than debootstrap): clusters.docker.image. A docker run builds the
default image itself when it is missing; this command builds it ahead of time,
or again with ``--rebuild``, and says what it did and how long it took.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.errors import BadInput

ORDER = 65


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "image",
        help="build the docker node image (cached; Debian packages of this host only)",
        description="Build the image docker clusters run their nodes in: a minimal root whose /usr is this "
        "host's (Debian packages only), bind-mounted read-only at run time. Cached by tag and recipe.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="build the node image unless an identical one is cached")
    build.add_argument("--rebuild", action="store_true", help="build again even if a cached image matches")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.action != "build":
        raise BadInput("say what to do: `ratchet image build` (optionally --rebuild).", where="ratchet image")
    from clusters.docker.cluster import client_from_env
    from clusters.docker.image import ImageError
    from clusters.docker.image import build as build_image

    client = client_from_env()
    try:
        built = build_image(client, rebuild=args.rebuild)
    except ImageError as exc:
        raise BadInput(f"the node image cannot be built here: {exc}.", where="ratchet image build") from None
    what = "cached" if built.reused else "built"
    Console(soft_wrap=True, highlight=False).print(
        f"{what} {built.tag} ({built.id[7:19]}, {built.size_bytes / 1e3:.0f} kB) in {built.seconds:.2f} s"
    )
    return 0
