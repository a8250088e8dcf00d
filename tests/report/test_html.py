"""The HTML report: one offline document, figures embedded, user text escaped."""

from __future__ import annotations

import base64
import html.parser
import math
import re

import matplotlib.pyplot as plt
import pytest

from tunelab.report.html import Section, build_report, figure_to_data_uri, format_value, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure(title: str):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    ax.set_title(title)
    return fig


class _Tags(html.parser.HTMLParser):
    """Collects (tag, attrs) of every start tag: checks structure, not substrings."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


@pytest.fixture
def page() -> str:
    sections = [
        Section("intro", "text", "First paragraph.\n\nSecond <b>not bold</b> paragraph."),
        Section("loss", "figure", _figure("a"), caption="training loss"),
        Section("results", "table", [
            {"arm": "adam <script>alert(1)</script>", "accuracy": 0.981234, "seeds": 5, "verdict": "better"},
            {"arm": "sgd", "accuracy": 1.5e-7, "seeds": 5, "verdict": "worse", "note": math.nan},
            {"arm": "base", "accuracy": 123456.0, "_class": "baseline"},
        ]),
        Section("acc", "figure", _figure("b")),
        Section("command", "code", "tunelab tune --space s.yaml && echo '<script>x</script>'"),
        Section("slices", "figure", figure_to_data_uri(_figure("c"))),
    ]
    return build_report("Study <report>", sections, subtitle="3 arms & 5 seeds")


def test_fully_offline(page):
    assert "http://" not in page and "https://" not in page
    without_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "//" not in without_images  # no scheme-relative URL either
    assert not any(a.get("src", "data:").split(":")[0] != "data" for _, a in _tags(page))
    assert not any(tag in ("link", "script") for tag, _ in _tags(page))


def test_viewport_meta_and_self_contained_head(page):
    metas = [a for tag, a in _tags(page) if tag == "meta"]
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert any(a.get("http-equiv") == "Content-Security-Policy" for a in metas)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page


def test_one_embedded_png_per_figure_section(page):
    imgs = [a for tag, a in _tags(page) if tag == "img"]
    assert len(imgs) == 3 == page.count("data:image/png;base64,")
    for img in imgs:
        data = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert data.startswith(PNG_SIGNATURE)
    assert [i["alt"] for i in imgs] == ["training loss", "acc", "slices"]


def test_user_text_is_escaped_everywhere(page):
    assert "<script>" not in page and "<b>not bold</b>" not in page and "<report>" not in page
    assert "adam &lt;script&gt;alert(1)&lt;/script&gt;" in page  # table cell
    assert "echo &#x27;&lt;script&gt;x&lt;/script&gt;&#x27;" in page  # code block
    assert "<title>Study &lt;report&gt;</title>" in page and "3 arms &amp; 5 seeds" in page


def test_table_header_numbers_and_row_classes(page):
    tags = _tags(page)
    assert [a.get("class") for t, a in tags if t == "tr"] == [None, "better", "worse", "baseline"]
    assert any(t == "div" and a.get("class") == "table-wrap" for t, a in tags)
    for text in ("<th scope=\"col\">note</th>", "<td class=\"num\">0.9812</td>",
                 "<td class=\"num\">1.500e-07</td>", "<td class=\"num\">1.235e+05</td>",
                 "<td class=\"num\">5</td>", "<td class=\"num\">–</td>"):
        assert text in page


def test_text_paragraphs_and_table_of_contents(page):
    tags = _tags(page)
    assert sum(t == "p" for t, _ in tags) == 3  # subtitle + two paragraphs
    assert [a["href"] for t, a in tags if t == "a"] == [f"#s{i}" for i in range(1, 7)]
    assert [a["id"] for t, a in tags if t == "section"] == [f"s{i}" for i in range(1, 7)]


@pytest.mark.parametrize("value, text", [(None, ""), (True, "True"), (3, "3"), (0.5, "0.5"),
                                         (0.0, "0"), (2 / 3, "0.6667"), (math.inf, "∞"), ("x", "x")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_figure_to_data_uri_closes_the_figure():
    fig = _figure("closing")
    uri = figure_to_data_uri(fig, dpi=50)
    assert uri.startswith("data:image/png;base64,") and not plt.fignum_exists(fig.number)
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)


def test_bad_sections_are_rejected():
    with pytest.raises(ValueError, match=r"kind='chart' is not known; choose one of \['code'"):
        Section("x", "chart", None)
    with pytest.raises(ValueError, match="contains a URL"):
        build_report("t", [Section("x", "html", '<img src="https://cdn.example/x.png">')])
    with pytest.raises(ValueError, match="must be a matplotlib Figure"):
        build_report("t", [Section("x", "figure", "plot.png")])
    assert "<em>trusted</em>" in build_report("t", [Section("x", "html", "<em>trusted</em>")])


def test_write_report_creates_folders(tmp_path):
    path = write_report(tmp_path / "a" / "b" / "report.html", "<p>é</p>")
    assert path.read_text(encoding="utf-8") == "<p>é</p>"
