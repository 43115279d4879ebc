"""WCAG AA contrast of the desk's colours, light and dark, computed from static/css/taskdesk.css.

The theme is one set of custom properties on :root, each `light-dark(<light>, <dark>)` or one
colour for both. Every text/background pair the stylesheets use is checked in both themes:
4.5:1 for text, 3:1 for UI parts (control borders, focus rings, rules that mark a state).
"""

import re
from pathlib import Path

import pytest
from django.conf import settings

CSS = Path(settings.BASE_DIR) / "static" / "css" / "taskdesk.css"
STYLESHEETS = sorted((Path(settings.BASE_DIR) / "static" / "css").glob("*.css"))
THEMES = ("light", "dark")
STATUSES = (
    "pending",
    "executing",
    "paused",
    "interrupted",
    "completed",
    "failed",
    "error",
    "stopped",
    "canceled",
    "terminated",
    "timed_out",
)

# (foreground, background): text, 4.5:1.
TEXT_PAIRS = [
    ("ink", "bg"),
    ("ink", "surface"),
    ("ink", "surface-2"),
    ("ink", "surface-hover"),
    ("ink", "code-bg"),
    ("ink", "accent-bg"),
    ("ink-2", "surface"),
    ("ink-2", "surface-2"),
    ("ink-2", "line-2"),
    ("muted", "bg"),
    ("muted", "surface"),
    ("muted", "surface-2"),
    ("faint", "surface"),
    ("accent", "surface"),
    ("accent", "bg"),
    ("accent", "surface-2"),
    ("accent-ink", "accent"),
    ("accent-ink", "accent-hover"),
    ("danger", "surface"),
    ("danger", "danger-bg"),
    ("danger-ink", "danger-bg"),
    ("warn", "surface"),
    ("warn", "warn-bg"),
    ("warn-ink", "warn-bg"),
    ("warn-ink", "st-paused-bg"),
    ("ok", "surface"),
    ("ok", "ok-bg"),
    ("surface", "danger"),  # a failed tool call's outcome
    ("danger-ink", "surface"),
    ("flash-ink", "flash-bg"),
    ("ink", "flash-bg"),
    ("topbar-ink", "topbar-bg"),
    ("topbar-ink-2", "topbar-bg"),
    ("topbar-muted", "topbar-bg"),
    ("topbar-ink", "topbar-hover"),
    *[(f"st-{status}", f"st-{status}-bg") for status in STATUSES],
    *[(f"st-{status}", "surface") for status in STATUSES],
]
# (foreground, background): UI parts and graphics, 3:1 (WCAG 1.4.11). The amber rule beside a
# waiting request is decoration beside its heading and badge, not the only cue, and is not listed.
UI_PAIRS = [
    ("control-line", "surface"),
    ("control-line", "bg"),
    ("focus", "surface"),
    ("focus", "bg"),
    ("accent", "surface"),
    ("danger", "surface"),
    ("faint", "surface-2"),
    ("brand", "topbar-bg"),
    ("live", "topbar-bg"),
]

_PROPERTY = re.compile(r"--([\w-]+):\s*([^;]+);")
_LIGHT_DARK = re.compile(r"^light-dark\(\s*(#[0-9a-fA-F]{3,6})\s*,\s*(#[0-9a-fA-F]{3,6})\s*\)$")
_HEX = re.compile(r"^#[0-9a-fA-F]{3,6}$")


def theme_colours(css: str) -> dict[str, dict[str, str]]:
    """{theme: {property: #hex}} from the first :root block (shadows and rgba values are skipped)."""
    root = css[css.index(":root {") : css.index("\n}", css.index(":root {"))]
    themes: dict[str, dict[str, str]] = {"light": {}, "dark": {}}
    for name, value in _PROPERTY.findall(root):
        value = value.strip()
        if match := _LIGHT_DARK.match(value):
            themes["light"][name], themes["dark"][name] = match[1], match[2]
        elif _HEX.match(value):
            themes["light"][name] = themes["dark"][name] = value
    return themes


def luminance(colour: str) -> float:
    """Relative luminance (WCAG 2.x) of #rgb or #rrggbb."""
    hex_digits = colour.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    channels = [int(hex_digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def colours() -> dict[str, dict[str, str]]:
    return theme_colours(CSS.read_text())


def test_the_contrast_formula_matches_wcag():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#fff", "#ffffff") == pytest.approx(1.0)


def test_both_themes_define_every_colour_the_pairs_use(colours):
    wanted = {name for pair in TEXT_PAIRS + UI_PAIRS for name in pair}
    for theme in THEMES:
        assert wanted <= set(colours[theme]), sorted(wanted - set(colours[theme]))
    # The dark theme is a theme: most colours differ from the light ones.
    differing = [name for name in colours["light"] if colours["light"][name] != colours["dark"][name]]
    assert len(differing) >= 40


def failing(colours: dict[str, str], pairs: list[tuple[str, str]], minimum: float) -> dict[str, float]:
    """The pairs below `minimum`, with their ratios."""
    ratios = {f"{fg} on {bg}": contrast(colours[fg], colours[bg]) for fg, bg in pairs}
    return {pair: round(ratio, 2) for pair, ratio in ratios.items() if ratio < minimum}


@pytest.mark.parametrize("theme", THEMES)
def test_text_has_at_least_4_5_to_1(colours, theme):
    assert failing(colours[theme], TEXT_PAIRS, 4.5) == {}


@pytest.mark.parametrize("theme", THEMES)
def test_ui_parts_have_at_least_3_to_1(colours, theme):
    assert failing(colours[theme], UI_PAIRS, 3.0) == {}


@pytest.mark.parametrize("path", STYLESHEETS, ids=lambda path: path.name)
def test_colours_outside_the_theme_are_only_on_the_always_dark_top_bar(path):
    """A literal colour in a rule would not follow the theme: only the top bar's own (dark in both) remain."""
    css = path.read_text()
    if path == CSS:
        css = css[css.index(':root[data-theme="dark"]') :]  # after the theme's definitions
    allowed = {"#fff", "#151b26", "#7b8494", "#8fb0ff", "#ffd58a", "#c2410c"}
    literals = set(re.findall(r"#[0-9a-fA-F]{3,6}\b", css)) | set(re.findall(r"rgba?\([^)]*\)", css))
    assert literals <= allowed, sorted(literals - allowed)
