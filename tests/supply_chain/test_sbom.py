"""`make sbom`: a valid CycloneDX 1.6 SBOM per image that lists every package its locks pin,
with the sha256 the lock holds, plus the image's Debian packages when given; bad input ends in
one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from lockfile import canonical
from sbom import image_locks, image_names, merged_pins

from tuneops.core.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "sbom.py"
OS_PACKAGES = (
    "# debian 12\nlibc6\t2.36-9+deb12u10\tamd64\nzlib1g\t1:1.2.13.dfsg-1\tamd64\n"
    "libgone1\t\t\n"  # known to dpkg, not installed: no version, left out
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def sboms(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbom")
    done = _run("--out-dir", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _components(bom: dict) -> dict[str, dict]:
    python = [c for c in bom["components"] if c.get("purl", "").startswith("pkg:pypi/")]
    return {canonical(c["name"]): c for c in python}


def _hashes(component: dict) -> set[str]:
    refs = component.get("externalReferences", [])
    return {f"sha256:{h['content']}" for ref in refs for h in ref.get("hashes", [])}


@pytest.mark.parametrize("image", ["serve", "eval", "train", "serve-gpu"])
def test_each_image_gets_a_valid_sbom_of_every_package_its_locks_pin(sboms, image):
    assert image in image_names()
    text = (sboms / f"{image}.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    components = _components(bom)
    pins = merged_pins(image_locks(image))
    assert set(components) == {pin.key for pin in pins}
    for pin in pins:
        component = components[pin.key]
        assert component["version"] == pin.version
        assert component["purl"].startswith("pkg:pypi/") and pin.version in component["purl"]
        assert set(pin.hashes) <= _hashes(component), pin.name
    assert not {"checkov", "cdktf", "pytest", "moto"} & set(components)
    gpu = image in ("train", "serve-gpu")
    assert any(name.startswith("nvidia-") for name in components) == gpu
    locks = {p["value"] for p in bom["metadata"]["properties"] if p["name"] == "tuneops:lock"}
    assert ("requirements-gpu.lock" in locks) == gpu and "requirements-nodeps.lock" in locks


def test_the_images_debian_packages_join_the_python_ones(tmp_path):
    listing = tmp_path / "os-packages.tsv"
    listing.write_text(OS_PACKAGES)
    done = _run("--image", "serve", "--os-packages", str(listing), "--out-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "serve.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    purls = {c.get("purl") for c in bom["components"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=debian-12" in purls
    assert not {c["name"] for c in bom["components"]} & {"libgone1"}
    assert {c["name"] for c in bom["components"] if c["type"] == "operating-system"} == {"debian"}
    assert "torch" in _components(bom)
    refs = {d["ref"] for d in bom["dependencies"]}
    assert {c["bom-ref"] for c in bom["components"]} <= refs


@pytest.mark.parametrize(
    ("args", "listing", "message"),
    [
        (["--image", "nope"], None, "no image 'nope': known images are eval, serve"),
        (["--image", "serve"], "libc6\t2.36\tamd64\n", "expected `# <ID> <VERSION_ID>`"),
        (["--image", "serve"], "# debian 12\nlibc6 2.36 amd64\n", ":2: expected package<TAB>"),
        ([], OS_PACKAGES, "--os-packages belongs to one image"),
    ],
    ids=["unknown-image", "no-os-release", "bad-line", "two-images"],
)
def test_bad_input_ends_in_one_line(tmp_path, args, listing, message):
    if listing is not None:
        (tmp_path / "os.tsv").write_text(listing)
        args = [*args, "--os-packages", str(tmp_path / "os.tsv")]
    done = _run(*args, "--out-dir", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
