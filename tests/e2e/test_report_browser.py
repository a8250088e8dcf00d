"""A built report opened in headless Chromium: loads offline, every figure renders, fits a phone.

Needs Debian's Chromium and the Playwright Python package (`bash .ci/browser-setup.sh`);
skips with the reason when either is missing. Run with `pytest -m browser`.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("TUNELAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("chromium not found (run .ci/browser-setup.sh or set TUNELAB_CHROMIUM)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed (run .ci/browser-setup.sh)")

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from tunelab.report.compare_figs import plot_learning_curves, plot_metric_intervals  # noqa: E402
from tunelab.report.html import Section, build_report, write_report  # noqa: E402
from tunelab.report.study_figs import plot_history  # noqa: E402

# Without these Chromium tries the network (updates, sync, QUIC probes) and can hang offline.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
PHONE = 390


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # launch() gives every browser a fresh temporary --user-data-dir.
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=60_000)
        yield b
        b.close()


def inspect(browser: Any, path: Path, width: int, shot: Path | None = None) -> dict[str, Any]:
    """Open ``path`` at ``width`` CSS px and collect everything that can go wrong."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    seen: dict[str, list[str]] = {"console": [], "pageerror": [], "failed": [], "external": []}
    page.on("console", lambda m: m.type == "error" and seen["console"].append(m.text))
    page.on("pageerror", lambda e: seen["pageerror"].append(str(e)))
    page.on("requestfailed", lambda r: seen["failed"].append(f"{r.url[:80]} {r.failure}"))
    page.on("request", lambda r: r.url.split(":")[0] not in ("file", "data")
            and seen["external"].append(r.url[:80]))
    page.goto(path.as_uri(), wait_until="load", timeout=30_000)
    seen.update(page.evaluate("""() => ({
        images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth})),
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth})"""))
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    page.close()
    return seen


def problems(seen: dict[str, Any]) -> list[str]:
    """Every failed check, one line each; an empty list is a page that passed."""
    out = [f"{kind}: {msg}" for kind in ("console", "pageerror", "failed", "external")
           for msg in seen[kind]]
    out += [f"image not rendered: {i['alt']!r}" for i in seen["images"] if not (i["complete"] and i["w"] > 0)]
    if seen["scrollWidth"] > seen["innerWidth"] + 1:
        out.append(f"overflow: scrollWidth {seen['scrollWidth']} > innerWidth {seen['innerWidth']}")
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    band = {"mean": [1.0, 0.6, 0.4, 0.3], "low": [0.9, 0.5, 0.35, 0.25], "high": [1.1, 0.7, 0.45, 0.35]}
    curves = plot_learning_curves({a: {"train_loss": band, "val_loss": band} for a in ("sgd", "adam", "adamw")},
                                  metric_pairs=(("train_loss", "val_loss"),))
    intervals = plot_metric_intervals(
        [dict(arm="sgd", mean=0.95, ci_low=0.94, ci_high=0.96, baseline=True),
         dict(arm="adam", mean=0.97, ci_low=0.965, ci_high=0.975, verdict="better")], "test accuracy")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2, n_trials=8)
    wide_row = {f"column_{i}": 0.123456 * i for i in range(14)}
    sections = [
        Section("Learning curves", "figure", curves, caption="mean and band over seeds"),
        Section("Test accuracy", "figure", intervals),
        Section("Search history", "figure", plot_history(study)),
        Section("Arms", "table", [dict(arm="adam <b>", accuracy=0.97, verdict="better", **wide_row),
                                  dict(arm="sgd", accuracy=0.95, verdict="worse", **wide_row)]),
        Section("Command", "code", "tunelab compare --arms " + ",".join(f"arm{i}" for i in range(60))),
        Section("Notes", "text", "A long word: " + "x" * 200),
    ]
    plt.close("all")
    return write_report(tmp_path_factory.mktemp("report") / "report.html",
                        build_report("Browser check", sections, subtitle="offline, phone width"))


def _png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


def test_report_renders_offline_and_fits_a_phone(browser, report, tmp_path):
    shot = tmp_path / f"report_{PHONE}px.png"
    seen = inspect(browser, report, PHONE, shot)
    assert problems(seen) == []
    assert len(seen["images"]) == 3 and all(i["w"] > 0 for i in seen["images"])
    assert shot.is_file() and _png_width(shot) == PHONE  # full page, nothing wider than the phone


def test_report_renders_on_a_desktop(browser, report):
    assert problems(inspect(browser, report, 1280)) == []


BAD_PAGES = {
    "broken image": ('<img src="missing.png" alt="gone">', ("image not rendered", "failed")),
    "script error": ("<script>notDefinedAnywhere()</script>", ("pageerror",)),
    "too wide": ('<div style="width:1200px">wide</div>', ("overflow",)),
    "external url": ('<img src="http://127.0.0.1:9/x.png" alt="remote">', ("external", "image not rendered")),
}


@pytest.mark.parametrize("name", list(BAD_PAGES))
def test_the_checks_catch_a_bad_page(browser, tmp_path, name):
    body, expected = BAD_PAGES[name]
    path = tmp_path / "bad.html"
    path.write_text('<!DOCTYPE html><html><head><meta name="viewport" '
                    f'content="width=device-width, initial-scale=1"></head><body>{body}</body></html>')
    found = problems(inspect(browser, path, PHONE))
    for kind in expected:
        assert any(p.startswith(kind) for p in found), (kind, found)


def _verdict_page(tmp_path: Path) -> Path:
    """A compare report's verdict table as `tunelab compare` builds it: four arms with long names."""
    from dataclasses import asdict

    from tunelab.analysis.compare import analyze
    from tunelab.analysis.designs import one_at_a_time
    from tunelab.report.assemble import _verdict_rows

    arms = one_at_a_time({"optimizer": {"name": "adam"}},
                         [("optimizer.name", ["adam", "adamw", "nesterov", "rmsprop"])])
    runs = [dict(arm=i, arm_name=a.name, seed=s, status="completed",
                 history=[dict(epoch=1, train_loss=1.0, val_loss=1.0, train_accuracy=0.9, val_accuracy=0.9,
                               lr=0.1, seconds=1.0)],
                 result=dict(status="completed", test_accuracy=0.9 + 0.01 * i + 0.003 * (s % 2),
                             best_val_accuracy=0.9), reason="")
            for i, a in enumerate(arms) for s in range(5)]
    out = analyze(dict(arms=[asdict(a) for a in arms], seeds=list(range(5)), base={}, factorial=False),
                  runs, target=0.85)
    return write_report(tmp_path / "verdicts.html",
                        build_report("compare", [Section("Verdicts", "table", _verdict_rows(out, "test_accuracy"))]))


def test_the_verdict_column_is_in_view_at_1200_px(browser, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(_verdict_page(tmp_path).as_uri(), wait_until="load", timeout=30_000)
    wrap = page.evaluate("""() => { const w = document.querySelector('.table-wrap');
        const last = [...w.querySelectorAll('tr:first-child th')].pop().getBoundingClientRect();
        return {scroll: w.scrollWidth, client: w.clientWidth, right: last.right,
                box: w.getBoundingClientRect().right, header: last.width}; }""")
    page.close()
    # the table fits its box: no scrollbar, and the last column (the verdict) ends inside it
    assert wrap["scroll"] <= wrap["client"] + 1 and wrap["right"] <= wrap["box"] + 1, wrap
