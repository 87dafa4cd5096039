"""report.html in a real browser: headless Chromium at 1400 px, no horizontal overflow, every image loaded,
a full-page screenshot saved under the test's tmp dir (look at it: ``pytest --basetemp=DIR``)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from clip_bench.report import build_report
from clip_bench.report.synthetic import synthetic_rows
from clip_bench.results.rows import append_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1400
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)"),
]

#: Appended to a copy of the page: measures after load and writes the result into the DOM.
CHECKS = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var root = document.documentElement;
  var r = {scrollWidth: root.scrollWidth, innerWidth: window.innerWidth, scrollHeight: root.scrollHeight,
           images: imgs.length, broken: [], wide: []};
  imgs.forEach(function (img, i) { if (!(img.complete && img.naturalWidth > 0)) { r.broken.push(img.alt || i); } });
  document.querySelectorAll("body *").forEach(function (el) {
    if (r.wide.length < 10 && !el.closest(".scroll") && el.getBoundingClientRect().right > window.innerWidth + 0.5) {
      r.wide.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
    }
  });
  var out = document.createElement("pre");
  out.id = "clip-bench-checks";
  out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
});
</script>"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    models = (("ViT-B/32", "openai"), ("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-B/16", "openai"),
              ("ViT-L-14", "laion2b_s32b_b82k"))
    append_rows(results, synthetic_rows(models=models, fewshot_tasks=4, seeds=2, intervals=True))
    out = tmp_path_factory.mktemp("report")
    build_report(results, out, quiet=True)
    return out / "report.html"


def test_report_renders_without_overflow_and_with_every_image(page, tmp_path):
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECKS + "</body>"))
    proc = chromium([f"--window-size={WIDTH},1000", "--dump-dom", checked.as_uri()], tmp_path / "profile")
    found = re.search(r'<pre id="clip-bench-checks">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"chromium produced no measurements: {proc.stderr[-2000:]}"
    r = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert r["innerWidth"] == WIDTH
    assert r["scrollWidth"] <= r["innerWidth"], f"page overflows horizontally; too wide: {r['wide']}"
    assert r["images"] == 4 and r["broken"] == [], r

    shot = tmp_path / "report.png"  # the whole page, for a person to look at
    height = min(int(r["scrollHeight"]), 16000)
    proc = chromium([f"--window-size={WIDTH},{height}", f"--screenshot={shot}", page.as_uri()], tmp_path / "profile")
    assert shot.exists(), proc.stderr[-2000:]
    width, h = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (width, h) == (WIDTH, height)
