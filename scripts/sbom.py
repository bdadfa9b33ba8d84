"""A CycloneDX SBOM per image: its locked Python packages, and its OS packages when given.

    python scripts/sbom.py [--image NAME ...] [--os-packages FILE] [--out-dir .cache/sbom]

The Python part comes from the lock files the image's Dockerfile installs (``-r <lock>``), read
by ``cyclonedx-py requirements`` (cyclonedx-bom): every package with its version, purl and the
sha256 the lock pins. ``--os-packages`` adds the image's Debian packages: the output of

    . /etc/os-release; echo "# $ID $VERSION_ID"
    dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\n'

run inside the built image (cd.yml does). Each SBOM is validated against the CycloneDX 1.6
schema before it is written to ``<out-dir>/<image>.cdx.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lockfile import Pin, pins_by_key, read_lock, render_lock

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_text
from tuneops.core.paths import REPO_ROOT

IMAGES_DIR = REPO_ROOT / "workloads" / "images"
SPEC_VERSION = "1.6"
_LOCK_ARG = re.compile(r"-r\s+(requirements[\w.-]*\.lock)")
_OS_RELEASE = re.compile(r"^#\s*([a-z0-9._-]+)\s+([0-9a-z._-]+)\s*$")


def image_names() -> list[str]:
    return sorted(p.name.removesuffix(".Dockerfile") for p in IMAGES_DIR.glob("*.Dockerfile"))


def image_locks(image: str) -> list[Path]:
    """The lock files the image's Dockerfile installs, in the order it installs them."""
    dockerfile = IMAGES_DIR / f"{image}.Dockerfile"
    if not dockerfile.is_file():
        raise UserError(f"no image {image!r}: known images are {', '.join(image_names())}")
    locks = list(dict.fromkeys(_LOCK_ARG.findall(dockerfile.read_text(encoding="utf-8"))))
    if not locks:
        raise UserError(f"{dockerfile.name} installs no lock file (`pip install -r <lock>`)")
    return [REPO_ROOT / name for name in locks]


def merged_pins(locks: list[Path]) -> list[Pin]:
    """One pin per package over ``locks`` (the same package pinned twice must agree)."""
    merged: dict[str, Pin] = {}
    for lock in locks:
        for key, pin in pins_by_key(read_lock(lock)).items():
            seen = merged.get(key)
            if seen and seen.version != pin.version:
                raise UserError(f"{pin.name} is {seen.version} and {pin.version} in {lock.name}")
            hashes = (*seen.hashes, *pin.hashes) if seen else pin.hashes
            merged[key] = Pin(pin.name, pin.version, tuple(dict.fromkeys(hashes)))
    return list(merged.values())


def python_bom(pins: list[Pin]) -> dict:
    """``cyclonedx-py requirements`` over the pins, as a dict."""
    tool = Path(sys.executable).parent / "cyclonedx-py"
    if not tool.is_file():
        raise UserError("cyclonedx-py is not installed: run `make setup` (cyclonedx-bom)")
    cmd = [str(tool), "requirements", "--pyproject", str(REPO_ROOT / "pyproject.toml")]
    cmd += ["--sv", SPEC_VERSION, "--output-reproducible", "--of", "JSON", "-o", "-", "-"]
    done = subprocess.run(
        cmd, input=render_lock(pins, "locked"), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise UserError(f"cyclonedx-py failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout)


def read_os_packages(path: Path) -> tuple[tuple[str, str], list[tuple[str, str, str]]]:
    """(distribution id, version) and (package, version, architecture) from ``path``."""
    if not path.is_file():
        raise UserError(f"no OS package list {path}")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    release = _OS_RELEASE.match(lines[0]) if lines else None
    if not release:
        raise UserError(f"{path}:1: expected `# <ID> <VERSION_ID>` from /etc/os-release")
    packages = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0]:
            raise UserError(f"{path}:{number}: expected package<TAB>version<TAB>architecture")
        if fields[1]:  # dpkg lists packages it knows of but has not installed with no version
            packages.append((fields[0], fields[1], fields[2]))
    return (release[1], release[2]), packages


def os_components(release: tuple[str, str], packages: list[tuple[str, str, str]]) -> list[dict]:
    from packageurl import PackageURL

    distro, version = release
    components = [
        {"type": "operating-system", "bom-ref": f"os:{distro}-{version}", "name": distro}
        | {"version": version}
    ]
    for name, pkg_version, arch in packages:
        qualifiers = {"arch": arch} if arch else {}
        qualifiers["distro"] = f"{distro}-{version}"
        purl = PackageURL("deb", distro, name, pkg_version, qualifiers).to_string()
        components.append(
            {"type": "library", "bom-ref": purl, "name": name, "version": pkg_version}
            | {"purl": purl}
        )
    return components


def validate(bom: dict, image: str) -> str:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = json.dumps(bom, indent=2, sort_keys=True)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise UserError(f"the SBOM of {image} is not valid CycloneDX: {str(error).splitlines()[0]}")
    return text + "\n"


def image_bom(image: str, os_packages: Path | None) -> dict:
    locks = image_locks(image)
    bom = python_bom(merged_pins(locks))
    properties = bom["metadata"].setdefault("properties", [])
    properties += [{"name": "tuneops:image", "value": image}]
    properties += [{"name": "tuneops:lock", "value": lock.name} for lock in locks]
    if os_packages is not None:
        extra = os_components(*read_os_packages(os_packages))
        bom["components"] += extra
        bom["dependencies"] += [{"ref": c["bom-ref"]} for c in extra]
    return bom


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", action="append", help="an image (default: every image)")
    parser.add_argument("--os-packages", type=Path, help="the image's OS packages (one image)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / ".cache" / "sbom")
    args = parser.parse_args(argv)
    images = args.image or image_names()
    try:
        if args.os_packages and len(images) != 1:
            raise UserError("--os-packages belongs to one image: give exactly one --image")
        for image in images:
            bom = image_bom(image, args.os_packages)
            out = atomic_write_text(args.out_dir / f"{image}.cdx.json", validate(bom, image))
            print(f"{image}: {len(bom['components'])} components -> {out}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
