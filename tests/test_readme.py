"""README.md names only what a fresh clone has: files, images, links, make targets, commands and their options."""

import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# A repository path written anywhere in the text (prose, backticks, code blocks); `/path/to/docs/...`
# and URLs (`/tasks/...`, `http://...`) are no repository paths, hence the look-behind.
TOP_LEVEL = r"(?:\.ci|bench|dashboard|docs|static|tasks_app|templates|tests)"
REPO_PATH = re.compile(rf"(?<![\w/.-]){TOP_LEVEL}/[\w./<>-]*")
BACKTICKED = re.compile(r"`([^`\n]+)`")
# A file named by its place inside the app or bench (`live/wire.py`, `selectors.py`, `bench_bulk.py`).
SHORT_FILE = re.compile(r"^[\w/-]+\.(?:py|js|css|conf|txt|png|toml)$")


def tracked_or_present(relative: str) -> bool:
    """On disk and not git-ignored: an ignored file (a built one, a database) is not in a fresh clone."""
    path = ROOT / relative.rstrip("/")
    if not path.exists():
        return False
    ignored = subprocess.run(["git", "check-ignore", "-q", relative], cwd=ROOT, check=False)
    return ignored.returncode != 0


def repository_files() -> list[str]:
    """Tracked files and new ones not ignored: what a clone has once the work is committed."""
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    return subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_the_readme_refers_to_nothing_outside_the_repository():
    assert "../" not in README
    assert "DESIGN.md" not in README and "/work/" not in README


def test_every_repository_path_it_names_exists():
    paths = {m.group(0).rstrip(".,;:)") for m in REPO_PATH.finditer(README)}
    assert "tasks_app/scenarios.py" in paths and "docs/nginx.conf" in paths  # the pattern finds them
    missing = sorted(p for p in paths if "<" not in p and not tracked_or_present(p))
    assert missing == [], f"README.md names paths the repository lacks: {missing}"


def test_every_file_it_names_by_its_short_name_exists_somewhere_in_the_repository():
    files = repository_files()
    named = {t.split()[0] for t in BACKTICKED.findall(README) if SHORT_FILE.match(t.split()[0])}
    assert {"live/wire.py", "bench_fanout.py", "requirements-clients.txt"} <= named
    missing = sorted(n for n in named if not any(f == n or f.endswith("/" + n) for f in files))
    assert missing == [], f"README.md names files the repository lacks: {missing}"


def test_every_image_and_relative_link_exists():
    targets = re.findall(r"\]\(([^)\s]+)\)", README) + re.findall(r'<img[^>]* src="([^"]+)"', README)
    files = [t for t in targets if not t.startswith(("#", "http://", "https://"))]
    assert "docs/screenshot.png" in files and "docs/screenshot-phone.png" in files
    missing = sorted(t for t in files if not tracked_or_present(t))
    assert missing == [], f"README.md shows or links files the repository lacks: {missing}"


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_anchor_link_names_a_heading():
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", README, flags=re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and links <= anchors, f"no such heading: {sorted(links - anchors)}"


def test_every_make_target_it_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"run", "test", "lint"} <= named
    assert named <= targets, f"README.md names make targets the Makefile lacks: {sorted(named - targets)}"


def named_commands() -> dict[str, set[str]]:
    """Each management command the README names, with the options it writes after it."""
    invocations = re.findall(r"manage\.py ([a-z_]+)([^`\n#&>]*)", README)
    # "Other commands: `seed_demo [--tasks N]`, ...": a command name followed by its options.
    invocations += [
        (m.group(1), m.group(2))
        for t in BACKTICKED.findall(README)
        if (m := re.match(r"^([a-z]+(?:_[a-z]+)+)( (?:--|\[).*)$", t))
    ]
    commands: dict[str, set[str]] = {}
    for name, rest in invocations:
        commands.setdefault(name, set()).update(re.findall(r"--[a-z][\w-]*", rest))
    return commands


def test_every_management_command_and_option_it_names_exists():
    commands = named_commands()
    assert {"seed_demo", "simulate_agents", "clean_tasks", "expire_hitl", "create_api_token"} <= set(commands)
    known = get_commands()
    assert set(commands) <= set(known), f"no such command: {sorted(set(commands) - set(known))}"
    for name, options in commands.items():
        parser = load_command_class(known[name], name).create_parser("manage.py", name)
        accepted = {o for action in parser._actions for o in action.option_strings}
        assert options <= accepted, f"manage.py {name} has no {sorted(options - accepted)}"


@pytest.mark.parametrize("line", ["`make bogus`", "`manage.py no_such_command`", "`bench/no_such.py`"])
def test_the_checks_catch_what_is_not_there(line, monkeypatch):
    """Each check above fails on a README that names something missing."""
    monkeypatch.setitem(globals(), "README", README + "\n" + line + "\n")
    checks = [
        test_every_make_target_it_names_exists,
        test_every_management_command_and_option_it_names_exists,
        test_every_repository_path_it_names_exists,
    ]
    failures = 0
    for check in checks:
        try:
            check()
        except AssertionError:
            failures += 1
    assert failures == 1
