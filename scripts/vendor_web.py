"""Vendor the web UI's third-party browser libraries from npm into deskml/web/vendor.

deskml needs no Node.js to install or run: the few libraries the UI uses are copied, as published,
from their npm tarballs into the package, with their licence files. `deskml/web/vendor/vendor.json`
names each package, its exact version, the tarball's npm integrity hash, the files taken from it
and each file's sha256.

    python scripts/vendor_web.py           # fetch with `npm pack`, verify, copy, record the hashes
    python scripts/vendor_web.py --check   # offline: the committed files match vendor.json

To move a library to a new version, edit its `version` and `integrity` (`npm view PKG@VER
dist.integrity`) in vendor.json and run the script without `--check`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR_DIR = Path(__file__).resolve().parent.parent / "deskml" / "web" / "vendor"
MANIFEST = VENDOR_DIR / "vendor.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text("utf-8"))  # type: ignore[no-any-return]


def check(manifest: dict[str, Any]) -> list[str]:
    """Problems with the committed files (empty when they are exactly what vendor.json records)."""
    problems = []
    expected = {VENDOR_DIR / dest for package in manifest["packages"] for dest in package["files"].values()}
    for package in manifest["packages"]:
        for dest in package["files"].values():
            path = VENDOR_DIR / dest
            if not path.is_file():
                problems.append(f"{dest}: missing")
            elif sha256(path) != package["sha256"].get(dest):
                problems.append(f"{dest}: differs from {package['name']}@{package['version']} (run the script)")
    for path in VENDOR_DIR.rglob("*"):
        if path.is_file() and path != MANIFEST and path not in expected:
            problems.append(f"{path.relative_to(VENDOR_DIR)}: not listed in vendor.json")
    return problems


def fetch(manifest: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for package in manifest["packages"]:
            spec = f"{package['name']}@{package['version']}"
            out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", tmp],
                                 check=True, capture_output=True, text=True).stdout
            tarball = Path(tmp) / json.loads(out)[0]["filename"]
            digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
            if digest != package["integrity"]:
                sys.exit(f"{spec}: tarball integrity {digest} is not the recorded {package['integrity']}")
            package["sha256"] = {}
            with tarfile.open(tarball) as archive:
                for member, dest in package["files"].items():
                    source = archive.extractfile(member)
                    if source is None:
                        sys.exit(f"{spec}: {member} is not a file in the tarball")
                    target = VENDOR_DIR / dest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read())
                    package["sha256"][dest] = sha256(target)
            print(f"vendored {spec}: {', '.join(package['files'].values())}")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files; no network")
    args = parser.parse_args()
    manifest = load()
    if args.check:
        problems = check(manifest)
        for problem in problems:
            print(problem, file=sys.stderr)
        sys.exit(1 if problems else 0)
    fetch(manifest)


if __name__ == "__main__":
    main()
