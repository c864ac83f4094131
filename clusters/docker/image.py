"""The node image: a minimal Debian root whose ``/usr`` is the host's, bind-mounted read-only.

Two ways were measured for issue 15 (2 cores shared by several agents, load 4-5):

- ``debootstrap --variant=minbase --include=python3,nftables,iptables,iproute2,procps,
  fuse3,faketime bookworm`` from deb.debian.org: 4 min 14 s wall and a 278 MB root,
  every machine, every CI run (the image cache is per docker daemon);
- the root built here: the host's ``/etc`` essentials (loader cache, alternatives,
  iproute2 tables, passwd) in a tar of about 80 kB, ``/bin``, ``/lib``,
  ``/lib64`` as the merged-/usr symlinks, and the host's ``/usr`` bind-mounted read-only
  at run time (``/usr/local`` masked by an empty tmpfs): about a second.

We use the second. What a node runs is still Debian packages only: the build refuses
unless every tool a node needs is in ``/usr`` *and* owned by a Debian package
(``dpkg -S``), and ``/usr/local`` (where non-packaged software lives) is hidden from
the nodes. The cost is that the image is tied to the host it was built on (a Debian
with those packages installed, the same set the README's test command installs) and
that the host's ``/usr`` is shared read-only with the nodes; the project's ``vr/`` is
bind-mounted read-only at ``/opt/ratchet/vr`` the same way, so a node always runs the
checkout's code without a rebuild.

The image is cached by tag; its ``org.ratchet.recipe`` label is a hash of this recipe,
so a changed recipe builds a new image and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusters.docker import labels as lab

logger = logging.getLogger(__name__)

REPOSITORY = "ratchet-node"
TAG = "host-usr-1"
DEFAULT_IMAGE = f"{REPOSITORY}:{TAG}"
NODE_PYTHON = "/usr/bin/python3"
VR_IN_NODE = "/opt/ratchet"  # PYTHONPATH of a node: /opt/ratchet/vr is the checkout's vr/, read-only

# What a node needs, the path in the host's /usr, and the Debian package that provides it.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("/usr/bin/python3", "python3"),
    ("/usr/bin/sh", "dash"),
    ("/usr/sbin/nft", "nftables"),
    ("/usr/sbin/iptables", "iptables"),
    ("/usr/sbin/ip", "iproute2"),
    ("/usr/bin/ps", "procps"),
    ("/usr/bin/kill", "procps"),
    ("/usr/bin/fusermount3", "fuse3"),
    ("/usr/bin/faketime", "faketime"),
    ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "libfaketime"),
)
ETC_FILES = (
    "passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
    "iproute2", "protocols", "services", "ethertypes", "debian_version", "os-release",
)  # fmt: skip
DIRS = {"etc": 0o755, "tmp": 0o1777, "var/tmp": 0o1777, "var/lib": 0o755, "run": 0o755, "root": 0o700,
        "proc": 0o555, "sys": 0o555, "dev": 0o755, "usr": 0o755, "opt/ratchet/vr": 0o755, "sbin": 0o755}  # fmt: skip
# /sbin is a directory of its own: docker --init mounts its docker-init at /sbin/docker-init, which a
# link into the read-only /usr could not hold. Nothing a node runs names /sbin (PATH has /usr/sbin).
LINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64"}


class ImageError(RuntimeError):
    """The image cannot be built here; the message says which package to install."""


@dataclass(frozen=True, slots=True)
class Built:
    tag: str
    id: str
    seconds: float
    reused: bool
    size_bytes: int


def recipe_hash() -> str:
    text = json.dumps([TAG, REQUIRED, ETC_FILES, sorted(DIRS.items()), sorted(LINKS.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _dpkg_files() -> set[str]:
    """Every path some installed Debian package owns (dpkg's file lists, read once)."""
    owned: set[str] = set()
    for listing in Path("/var/lib/dpkg/info").glob("*.list"):
        owned.update(listing.read_text(errors="replace").splitlines())
    return owned


def _owned_by_package(path: str, owned: set[str]) -> bool:
    """dpkg knows the file, or what its alternatives link resolves to (merged /usr: dpkg may list
    it under /bin, /sbin or /lib)."""
    for candidate in (path, os.path.realpath(path)):
        names = {candidate}
        for top in ("bin", "sbin", "lib"):
            if candidate.startswith(f"/usr/{top}/"):
                names.add(candidate.removeprefix("/usr"))
        if names & owned:
            return True
    return False


def check_host() -> None:
    """Every tool a node needs is in the host's /usr and comes from a Debian package."""
    missing = [package for path, package in REQUIRED if not os.path.exists(path)]
    if missing:
        raise ImageError(
            "the node image uses this host's /usr, which lacks "
            + ", ".join(sorted(set(missing)))
            + f": apt-get install {' '.join(sorted(set(missing)))}"
        )
    try:
        owned = _dpkg_files()
    except OSError as exc:
        raise ImageError(
            f"dpkg's file lists are needed to check that node tools are Debian packages: {exc}"
        ) from exc
    if not owned:
        raise ImageError("no dpkg file lists in /var/lib/dpkg/info: the node image needs a Debian host")
    foreign = [path for path, _ in REQUIRED if not _owned_by_package(path, owned)]
    if foreign:
        raise ImageError(
            "these node tools are not from a Debian package (dpkg -S does not know them): "
            + ", ".join(foreign)
            + "; the node image takes Debian packages only"
        )


def rootfs_tar() -> bytes:
    """The image's own files: directories, merged-/usr links and the host's /etc essentials."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in sorted(DIRS.items()):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
        for name, target in sorted(LINKS.items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(info)
        for name in ETC_FILES:
            path = Path("/etc") / name
            if path.exists() or path.is_symlink():
                tar.add(str(path), arcname=f"etc/{name}", recursive=True)
    return buffer.getvalue()


def find(client: Any, tag: str = DEFAULT_IMAGE) -> Any | None:
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def build(client: Any, *, tag: str = DEFAULT_IMAGE, rebuild: bool = False) -> Built:
    """The cached node image (built when missing, changed, or ``rebuild``)."""
    started = time.monotonic()
    found = find(client, tag)
    if found is not None and not rebuild and (found.labels or {}).get(lab.RECIPE) == recipe_hash():
        return Built(tag, found.id, time.monotonic() - started, True, int(found.attrs.get("Size", 0)))
    check_host()
    repository, _, version = tag.partition(":")
    label_lines = {lab.MANAGED: "1", lab.ROLE: "image", lab.RECIPE: recipe_hash()}
    changes = [f"LABEL {key}={value}" for key, value in label_lines.items()]
    changes += ['CMD ["sleep", "infinity"]', f"WORKDIR {VR_IN_NODE}", f"ENV PYTHONPATH={VR_IN_NODE}"]
    client.api.import_image_from_data(
        rootfs_tar(), repository=repository, tag=version or "latest", changes=changes
    )
    image = client.images.get(tag)
    if found is not None and found.id != image.id:  # the old one is now an untagged layer of ours
        import docker.errors

        try:
            client.images.remove(found.id)
        except docker.errors.APIError as exc:
            logger.info("old node image %s kept: %s", found.id, exc)
    return Built(tag, image.id, time.monotonic() - started, False, int(image.attrs.get("Size", 0)))


def node_mounts(vr_dir: Path) -> list[str]:
    """Bind mounts every node (and probe) container gets, besides the run directory."""
    return ["/usr:/usr:ro", f"{vr_dir}:{VR_IN_NODE}/vr:ro"]


NODE_TMPFS = {"/usr/local": "ro,size=64k"}  # only Debian packages: the host's /usr/local stays hidden
