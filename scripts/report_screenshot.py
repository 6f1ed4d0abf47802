"""Look at the Snakemake HTML report in a real headless browser: one PNG per page.

    python scripts/report_screenshot.py report.html --output report_screenshots

The report is a single-page app: for each page below, a copy of the report gets a short
script that clicks through the menu (entries found by their text), and Chromium
(``chromium --headless``) takes a screenshot after the page's scripts have run. Needs a
``chromium`` (or ``chromium-browser``, ``google-chrome``) on PATH; Debian:
``apt-get install chromium``. Prints each PNG and whether every click found its entry.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PAGES = {
    "home": [],
    "metrics": ["Metrics", "Tables", "pixel2isdf"],
    "reconstruction": ["Reconstructions", "pixel2isdf", "@first"],
    "colour": ["Colour", "pixel2isdf", "@first"],
    "training": ["Training", "training curves"],
    "body_fit": ["Body fit", "@first", "act00"],
    "preprocessing": ["Preprocessing", "@first", "act00"],
    "ablation": ["Experiments", "Ablation", "ablation"],
    "views_study": ["Experiments", "Views study", "views"],
}
"""Page name → the menu entries clicked in turn (``@first``: the first entry of the list)."""

CLICKER = """
<script>
(function () {
  const steps = %s;
  const found = [];
  function entries() {
    return Array.from(document.querySelectorAll("nav a, nav li, table tr, button"));
  }
  function click(i) {
    if (i >= steps.length) { document.title = "clicked:" + JSON.stringify(found); return; }
    let target;
    if (steps[i] === "@first") {
      target = Array.from(document.querySelectorAll("nav .p-3 a, nav .p-3 li a, table tr"))
        .find(e => !/^(General|Results|Workflow|Statistics|About)$/.test(e.textContent.trim()));
    } else {
      target = entries().find(e => e.textContent.trim() === steps[i])
        || entries().find(e => e.textContent.trim().includes(steps[i]));
    }
    found.push(Boolean(target));
    if (target) { (target.querySelector("a") || target).click(); }
    setTimeout(() => click(i + 1), 400);
  }
  window.addEventListener("load", () => setTimeout(() => click(0), 400));
})();
</script>
"""


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH (Debian: apt-get install chromium)")


def screenshot(report: Path, steps: list[str], output: Path, size: str) -> bool:
    html = report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        head, tail = html.rsplit("</body>", 1)  # the last one: the app's scripts hold others
        page.write_text(head + CLICKER % json.dumps(steps) + "</body>" + tail,
                        encoding="utf-8")
        cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={size}", "--virtual-time-budget=20000",
               f"--screenshot={output.resolve()}", page.as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        dom = subprocess.run([*cmd[:-2], "--dump-dom", page.as_uri()], check=True,
                             capture_output=True, text=True, timeout=120).stdout
    clicked = (dom.split("<title>clicked:", 1)[1].split("</title>", 1)[0]
               if "<title>clicked:" in dom else "not run") if steps else "[]"
    ok = clicked.startswith("[") and "false" not in clicked
    print(f"{output}: clicks {' > '.join(steps) or '(none)'}: {'ok' if ok else clicked}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--output", type=Path, default=Path("report_screenshots"))
    parser.add_argument("--size", default="1400,1000", help="window WIDTH,HEIGHT")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        sys.exit(f"{args.report} does not exist; build it with `snakemake --report {args.report}`")
    args.output.mkdir(parents=True, exist_ok=True)
    results = [screenshot(args.report, steps, args.output / f"{name}.png", args.size)
               for name, steps in PAGES.items()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
