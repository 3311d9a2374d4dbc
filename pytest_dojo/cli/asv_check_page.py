"""``pytest-dojo asv-check-page``: the published ASV page as a user sees it, in headless Chromium.

    pytest-dojo asv-check-page [--html-dir .asv/html] [--benchmark NAME] [--min-commits 3]
                               [--screenshot docs/img/asv.png]

Serves the page over http on 127.0.0.1 (asv's page loads its data with XHR, which ``file://``
forbids), opens the graph of ``--benchmark`` in headless Chromium inside a same-origin probe page,
and reads back, from the live flot plot in the browser, every series and how many commits it has a
point for. Passes (exit 0) when the page's scripts loaded, the browser fetched the graph's data
over XHR, and at least one series has points at ``--min-commits`` or more commits; otherwise one
line says what is wrong (exit 1). Optionally saves a screenshot of the same view.

Needs ``chromium`` (Debian: ``apt-get install chromium``) and a page built by
``pytest-dojo asv-publish``, which makes it work offline.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from pytest_dojo.cli.common import add_command, project_root

DEFAULT_BENCHMARK = "simulated.SimulatedThroughput.track_samples_per_s"
PROBE_PATH = "/__dojo_probe__.html"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)

PROBE_PAGE = """<!DOCTYPE html>
<html><body style="margin:0">
<iframe id="page" src="{src}" width="{width}" height="{height}" style="border:0"></iframe>
<pre id="probe">pending</pre>
<script>
var tries = 0;
function report(value) {{ document.getElementById("probe").textContent = JSON.stringify(value); }}
function check() {{
  tries += 1;
  var frame = document.getElementById("page").contentWindow;
  var text = frame.document && frame.document.body ? frame.document.body.innerText : "";
  if (text.indexOf("continental origin of swallow") >= 0) {{ report({{error: "scripts"}}); return; }}
  var $ = frame.jQuery;
  var plot = $ ? $("#main-graph").data("plot") : null;
  if (plot && plot.getData().length) {{
    var canvas = $("#main-graph canvas.flot-base");
    report({{
      series: plot.getData().map(function (s) {{
        var xs = {{}};
        s.data.forEach(function (p) {{ if (p && p[1] !== null && isFinite(p[1])) xs[p[0]] = true; }});
        return {{label: String(s.label), commits: Object.keys(xs).length}};
      }}),
      canvas: [canvas.width(), canvas.height()]
    }});
    return;
  }}
  if (tries > 150) {{ report({{error: "timeout", text: text.slice(0, 300)}}); return; }}
  setTimeout(check, 100);
}}
setTimeout(check, 100);
</script></body></html>
"""


class PageCheckError(Exception):
    """The page does not show what it should: one line for the user."""


class _Handler(SimpleHTTPRequestHandler):
    """Static files of the page, the probe page, and a log of what the browser requested."""

    probe: ClassVar[bytes] = b""
    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requested.append(self.path)
        if self.path.split("?")[0] == PROBE_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(self.probe)))
            self.end_headers()
            self.wfile.write(self.probe)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        return


def find_chromium(name: str | None) -> str:
    """The Chromium binary: ``name`` or the first of chromium, chromium-browser, google-chrome on PATH."""
    for candidate in [name] if name else ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(candidate)
        if path:
            return path
    raise PageCheckError("no chromium found; install it (Debian: apt-get install chromium) or pass --chromium")


def _chromium(binary: str, args: Sequence[str], timeout_s: float) -> str:
    with tempfile.TemporaryDirectory(prefix="dojo-chromium-") as profile:
        completed = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if completed.returncode != 0:
        raise PageCheckError(f"chromium exited with {completed.returncode}: {completed.stderr.strip()[-300:]}")
    return completed.stdout


def check_page(
    html_dir: Path,
    benchmark: str,
    *,
    min_commits: int,
    chromium: str,
    screenshot: Path | None = None,
    query: str = "",
    size: tuple[int, int] = (1400, 900),
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Load the graph of ``benchmark`` in Chromium; return what the plot shows, or raise PageCheckError."""
    if not (html_dir / "index.html").is_file():
        raise PageCheckError(f"{html_dir}/index.html does not exist; build it with pytest-dojo asv-publish")
    fragment = "#" + benchmark + (("?" + query) if query else "")
    width, height = size
    handler = functools.partial(_Handler, directory=str(html_dir))
    _Handler.requested = []
    _Handler.probe = PROBE_PAGE.format(src=html.escape("index.html" + fragment), width=width, height=height).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    budget = ["--virtual-time-budget=30000", f"--window-size={width},{height}"]
    try:
        dom = _chromium(chromium, [*budget, "--dump-dom", base + PROBE_PATH], timeout_s)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page = base + "/index.html" + quote(fragment, safe="#?=&;,'")
            _chromium(chromium, [*budget, f"--screenshot={screenshot}", page], timeout_s)
    finally:
        server.shutdown()
        server.server_close()

    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    if match is None:
        raise PageCheckError("the probe page did not load in chromium")
    probe: dict[str, Any] = (
        json.loads(html.unescape(match.group(1))) if match.group(1) != "pending" else {"error": "pending"}
    )
    graph_requests = [path for path in _Handler.requested if "/graphs/" in path and f"/{benchmark}.json" in path]
    if probe.get("error") == "scripts":
        raise PageCheckError(
            "the page's JavaScript libraries did not load (offline?); publish with pytest-dojo asv-publish"
        )
    if not graph_requests:
        raise PageCheckError(f"the browser fetched no graph data for {benchmark}; is it a benchmark of this page?")
    if "error" in probe:
        text = probe.get("text", "")
        raise PageCheckError(f"no plot of {benchmark} appeared in the page ({probe['error']}): {text!r}")
    best = max((series["commits"] for series in probe["series"]), default=0)
    if best < min_commits:
        raise PageCheckError(
            f"{benchmark}: the plot has points at {best} commit(s) at most, fewer than {min_commits}; "
            "record more commits (pytest-dojo asv-backfill)"
        )
    probe["graph_requests"] = graph_requests
    return probe


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "asv-check-page",
        run,
        summary="load the published ASV page in headless Chromium and count the plotted points",
        doc=__doc__,
    )
    parser.add_argument("--html-dir", type=Path, default=None, help="published page (default: .asv/html)")
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK, help="graph to open (default: %(default)s)")
    parser.add_argument("--query", default="", help="asv's graph settings after '?', e.g. \"p-mesh='5x5'\"")
    parser.add_argument("--min-commits", type=int, default=3, help="points required (default: %(default)s)")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a PNG of the graph here")
    parser.add_argument("--chromium", default=None, help="browser binary (default: chromium on PATH)")


def run(args: argparse.Namespace) -> int:
    html_dir: Path = args.html_dir or project_root() / ".asv" / "html"
    try:
        probe = check_page(
            html_dir.resolve(),
            args.benchmark,
            min_commits=args.min_commits,
            chromium=find_chromium(args.chromium),
            screenshot=args.screenshot,
            query=args.query,
        )
    except (PageCheckError, subprocess.TimeoutExpired) as error:
        print(f"check_asv_page: {error}", file=sys.stderr)
        return 1
    series = ", ".join(f"{item['label']}: {item['commits']}" for item in probe["series"])
    print(
        f"check_asv_page: {args.benchmark}: {len(probe['series'])} series plotted on a "
        f"{probe['canvas'][0]}x{probe['canvas'][1]} canvas; commits with a point per series: {series}"
    )
    if args.screenshot is not None:
        print(f"check_asv_page: screenshot {args.screenshot}")
    return 0
