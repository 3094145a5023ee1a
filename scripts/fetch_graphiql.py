"""Fetch the GraphiQL explorer's scripts and styles so the API serves them itself.

`GET /graphql` in a browser shows GraphiQL, and it must work offline: no CDN. This script takes
pinned npm packages (GraphiQL's UMD build and React 18's UMD builds) with the ordinary npm client
(`npm pack`), checks each tarball's integrity and each extracted file's sha256 against the pins
below, and writes the files to `scriptlabs/static/graphiql/`, which the app mounts at `/graphiql`.

Usage:
    python3 scripts/fetch_graphiql.py            # fetch what is missing or stale
    python3 scripts/fetch_graphiql.py --check    # exit 1 unless every file is present and pinned
    python3 scripts/fetch_graphiql.py --dest DIR # write somewhere else

Only the standard library is used, so it runs before any virtual environment exists.
To move to new versions: change the pins, run with `--print-hashes`, and paste the new hashes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "scriptlabs" / "static" / "graphiql"


@dataclass(frozen=True, slots=True)
class Package:
    """An npm package pinned by exact version and by the registry's integrity (sha512)."""

    name: str
    version: str
    integrity: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:
        # `npm pack` names the file <name>-<version>.tgz (none of ours is scoped)
        return f"{self.name}-{self.version}.tgz"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file taken out of a package tarball, pinned by its sha256."""

    package: Package
    member: str  # path inside the tarball
    name: str  # file name under the destination folder
    sha256: str


GRAPHIQL = Package(
    "graphiql",
    "3.9.0",
    "sha512-rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA==",
)
REACT = Package(
    "react",
    "18.3.1",
    "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
)
REACT_DOM = Package(
    "react-dom",
    "18.3.1",
    "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
)

ASSETS = (
    Asset(
        REACT,
        "package/umd/react.production.min.js",
        "react.production.min.js",
        "d949f1c3687aedadcedac85261865f29b17cd273997e7f6b2bfc53b2f9d4c4dd",
    ),
    Asset(
        REACT_DOM,
        "package/umd/react-dom.production.min.js",
        "react-dom.production.min.js",
        "35f4f974f4b2bcd44da73963347f8952e341f83909e4498227d4e26b98f66f0d",
    ),
    Asset(
        GRAPHIQL,
        "package/graphiql.min.js",
        "graphiql.min.js",
        "a330a2be1d2389486840a9d0a834767d9083a23f105879e0de54e4fce83d3513",
    ),
    Asset(
        GRAPHIQL,
        "package/graphiql.min.css",
        "graphiql.min.css",
        "bdddd50aac5bdb0edd83e5c862ba2fed9db2964e4c75d4655ab62b0a7d5bd730",
    ),
    # both packages are MIT licensed: their notices travel with the files
    Asset(
        GRAPHIQL,
        "package/LICENSE",
        "LICENSE.graphiql.txt",
        "4b18fbe55c4e8f9169cb702be138f4d858a2dad920c39857204ffdc9c1c9fdc4",
    ),
    Asset(
        REACT,
        "package/LICENSE",
        "LICENSE.react.txt",
        "52412d7bc7ce4157ea628bbaacb8829e0a9cb3c58f57f99176126bc8cf2bfc85",
    ),
)


class FetchError(Exception):
    """The assets could not be fetched or did not match their pins."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def stale_assets(dest: Path) -> list[Asset]:
    """Assets missing from `dest` or whose content differs from the pin."""
    return [
        a for a in ASSETS if not (dest / a.name).is_file() or sha256_of(dest / a.name) != a.sha256
    ]


def integrity_of(path: Path) -> str:
    """The npm integrity string of a tarball (`sha512-<base64>`, as `npm view` shows it)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def check_integrity(path: Path, package: Package) -> None:
    """Compare a tarball with its pinned integrity string."""
    actual = integrity_of(path)
    if actual != package.integrity:
        raise FetchError(f"{package.spec}: integrity {actual}, pinned {package.integrity}")


def npm_pack(packages: list[Package], workdir: Path) -> None:
    """Download package tarballs into `workdir` with the npm client."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed (Debian: apt-get install npm)")
    # --ignore-scripts: nothing from a package runs here; cwd is the pack destination
    # (works with every npm from 7 on, unlike --pack-destination)
    cmd = [npm, "pack", "--ignore-scripts", "--silent", *(p.spec for p in packages)]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FetchError(f"`{' '.join(cmd[1:])}` failed:\n{result.stderr.strip()}")


def read_member(tarball: Path, member: str) -> bytes:
    """The bytes of one regular file in a tarball."""
    with tarfile.open(tarball, "r:gz") as tar:
        info = tar.getmember(member)
        extracted = tar.extractfile(info) if info.isfile() else None
        if extracted is None:
            raise FetchError(f"{tarball.name}: {member} is not a regular file")
        with extracted:
            return extracted.read()


def fetch(dest: Path, *, print_hashes: bool = False) -> list[Asset]:
    """Fetch the stale assets into `dest`; returns what was written."""
    wanted = list(ASSETS) if print_hashes else stale_assets(dest)
    if not wanted:
        return []
    packages = list(dict.fromkeys(a.package for a in wanted))
    with tempfile.TemporaryDirectory(prefix="graphiql-") as tmp:
        workdir = Path(tmp)
        npm_pack(packages, workdir)
        for package in packages:
            tarball = workdir / package.tarball
            if not tarball.is_file():
                raise FetchError(f"npm pack did not produce {package.tarball}")
            if print_hashes:
                print(f"{package.spec} {integrity_of(tarball)}")
            else:
                check_integrity(tarball, package)
        dest.mkdir(parents=True, exist_ok=True)
        for asset in wanted:
            data = read_member(workdir / asset.package.tarball, asset.member)
            actual = hashlib.sha256(data).hexdigest()
            if print_hashes:
                print(f"{asset.name} {actual}")
                continue
            if actual != asset.sha256:
                raise FetchError(f"{asset.name}: sha256 {actual}, pinned {asset.sha256}")
            # write then rename, so an interrupted run never leaves a half file behind
            partial = dest / f".{asset.name}.partial"
            partial.write_bytes(data)
            os.replace(partial, dest / asset.name)
    return [] if print_hashes else wanted


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="output folder")
    parser.add_argument(
        "--check", action="store_true", help="only verify; exit 1 when a file is missing or stale"
    )
    parser.add_argument(
        "--print-hashes", action="store_true", help="download and print the hashes to pin"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    dest: Path = args.dest.resolve()

    if args.check:
        stale = stale_assets(dest)
        for asset in stale:
            print(f"missing or stale: {dest / asset.name}", file=sys.stderr)
        return 1 if stale else 0
    try:
        written = fetch(dest, print_hashes=args.print_hashes)
    except (FetchError, OSError, tarfile.TarError, KeyError) as exc:
        print(f"fetch_graphiql: {exc}", file=sys.stderr)
        return 1
    if not args.quiet and not args.print_hashes:
        if written:
            versions = ", ".join(dict.fromkeys(a.package.spec for a in written))
            print(f"GraphiQL assets written to {dest} ({versions})")
        else:
            print(f"GraphiQL assets up to date in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
