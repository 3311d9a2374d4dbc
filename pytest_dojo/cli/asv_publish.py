"""``pytest-dojo asv-publish``: build the ASV history page (``asv publish``), working offline.

    pytest-dojo asv-publish [--html-dir DIR] [--results-dir DIR] [--no-vendor]

asv's page loads jQuery, flot, bootstrap and three small plugins from public CDNs; behind a firewall
(CI artifacts, this project's machines) it shows "Can not determine continental origin of swallow"
and no graph. This command runs ``asv publish`` and then *vendors* those files: it fetches the same
versions from the npm registry with ``npm pack`` (cached in ``.asv/vendor``), copies them under
``<html>/vendor/`` and points the page at the copies. Where npm cannot fetch a file the CDN link is
kept (the page still works online) and a warning says so. ``stupidtable`` 1.0.1 is not on npm;
1.1.3, API-compatible, stands in.

View the result with ``asv preview`` (or ``python -m http.server -d .asv/html``): the page loads its
data with XHR, which browsers refuse on ``file://``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_dojo.cli.asv_config import config_copy
from pytest_dojo.cli.common import EXIT_USAGE, add_command, project_root

VENDOR_CACHE = Path(".asv") / "vendor"
"""Where ``npm pack`` tarballs are kept, under the project root."""


@dataclass(frozen=True, kw_only=True)
class VendoredFile:
    """A CDN file of asv's page and where the same file lives in an npm package."""

    url: str
    package: str
    member: str

    @property
    def local_name(self) -> str:
        return f"{self.package.replace('@', '-')}-{Path(self.member).name}"


VENDORED = (
    VendoredFile(
        url="https://code.jquery.com/jquery-3.3.1.min.js", package="jquery@3.3.1", member="dist/jquery.min.js"
    ),
    *(
        VendoredFile(
            url=f"https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/{name}.min.js",
            package="flot@0.8.3",
            member=f"{name}.js",
        )
        for name in ("jquery.flot", "jquery.flot.time", "jquery.flot.selection", "jquery.flot.categories")
    ),
    VendoredFile(
        url="https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js",
        package="flot-orderbars@1.0.0",
        member="js/jquery.flot.orderBars.js",
    ),
    VendoredFile(
        url="https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js",
        package="stupid-table-plugin@1.1.3",
        member="stupidtable.min.js",
    ),
    VendoredFile(
        url="https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js",
        package="blueimp-md5@2.19.0",
        member="js/md5.min.js",
    ),
    VendoredFile(
        url="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js",
        package="bootstrap@3.1.1",
        member="dist/js/bootstrap.min.js",
    ),
    VendoredFile(
        url="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css",
        package="bootstrap@3.1.1",
        member="dist/css/bootstrap.min.css",
    ),
)
"""Every external file that asv 0.6's index.html loads."""

_TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(?P<url>https?://[^\"]+)\"[^>]*>", re.IGNORECASE)
_DROPPED_ATTRIBUTES = re.compile(r"\s(?:integrity|crossorigin|referrerpolicy)=\"[^\"]*\"")


def fetch_package(package: str, cache: Path) -> Path | None:
    """The npm tarball of ``package`` (``name@version``), from the cache or ``npm pack``; None if unavailable."""
    name, version = package.rsplit("@", 1)
    tarball = cache / f"{name}-{version}.tgz"
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [npm, "pack", package, "--silent", "--pack-destination", str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return tarball if completed.returncode == 0 and tarball.is_file() else None


def vendor(html_dir: Path, cache: Path) -> list[str]:
    """Copy the page's CDN files into ``html_dir/vendor`` and rewrite its HTML; returns the URLs kept."""
    target = html_dir / "vendor"
    target.mkdir(exist_ok=True)
    local: dict[str, str] = {}
    missing: list[str] = []
    for item in VENDORED:
        tarball = fetch_package(item.package, cache)
        if tarball is None:
            missing.append(item.url)
            continue
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(f"package/{item.member}")
            if member is None:
                missing.append(item.url)
                continue
            (target / item.local_name).write_bytes(member.read())
        local[item.url] = f"vendor/{item.local_name}"

    def rewrite(match: re.Match[str]) -> str:
        url = match.group("url")
        if url not in local:
            return match.group(0)
        return _DROPPED_ATTRIBUTES.sub("", match.group(0).replace(url, local[url]))

    kept: set[str] = set()
    for page in html_dir.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        page.write_text(_TAG.sub(rewrite, text), encoding="utf-8")
        kept.update(url for url in (m.group("url") for m in _TAG.finditer(text)) if url not in local)
    return sorted(kept | set(missing))


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "asv-publish",
        run,
        summary="build the ASV history page (asv publish) with its scripts vendored for offline viewing",
        doc=__doc__,
    )
    parser.add_argument("--config", type=Path, default=None, help="asv configuration (default: asv.conf.json)")
    parser.add_argument("--html-dir", type=Path, default=None, help="output (default: html_dir of the configuration)")
    parser.add_argument("--results-dir", type=Path, default=None, help="input (default: results_dir of the config)")
    parser.add_argument("--no-vendor", action="store_true", help="keep asv's CDN links")


def run(args: argparse.Namespace) -> int:
    from asv.config import Config

    config_path = args.config or project_root() / "asv.conf.json"
    conf = Config.load(str(config_path))
    root = config_path.resolve().parent
    html_dir = (args.html_dir or root / conf.html_dir).resolve()
    results_dir = (args.results_dir or root / conf.results_dir).resolve()
    if not results_dir.is_dir():
        print(f"asv_publish: no results in {results_dir}; record some with pytest-dojo asv-record", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"results_dir": str(results_dir), "html_dir": str(html_dir)}
    with config_copy(config_path, overrides) as config:
        command = [sys.executable, "-m", "asv", "publish", "--no-pull", "--config", str(config)]
        completed = subprocess.run([*command, "--html-dir", str(html_dir)], cwd=root, check=False)
    if completed.returncode != 0:
        return completed.returncode
    if not args.no_vendor:
        kept = vendor(html_dir, project_root() / VENDOR_CACHE)
        for url in kept:
            print(f"asv_publish: warning: could not vendor {url}; the page loads it from the internet", file=sys.stderr)
    print(f"asv_publish: {html_dir}/index.html; view it with: python -m http.server -d {html_dir} 8080")
    return 0
