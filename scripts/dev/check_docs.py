#!/usr/bin/env python3
"""Fails when the user docs read like a development log.

README.md and docs/*.md (not docs/results/, not CHANGELOG.md) state facts with the command, machine
and versions that give them. This check rejects the phrases that tell the history of how a figure
was reached instead: numbered levers, "today"/"yesterday", issue numbers, commit hashes, and
wording about sessions or runs of work. It also holds README.md to 300 lines, and checks that
every repository path the docs name (scripts/, pipelines/, models/, docs/, tests/fixtures/) and
every relative link exists, so a moved script cannot leave a command in the docs that fails.

    python3 scripts/dev/check_docs.py          # exit 1 and one line per hit
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
README_MAX_LINES = 300

PHRASES = [
    (re.compile(r"\blevers?\s+\d+", re.I), "a numbered lever"),
    (re.compile(r"\b(today|yesterday|tonight)\b", re.I), "a day of development"),
    (re.compile(r"\bissues?\s+#?\d+", re.I), "an issue number"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"), "a commit hash"),
    (
        re.compile(
            r"\b(this|that|the previous|previous|the last|last|an earlier|earlier|the next|next|"
            r"one|a|each|every)\s+(development\s+)?(session|sitting|run of work)s?\b",
            re.I,
        ),
        "a session of work",
    ),
    (re.compile(r"\bsession-\d", re.I), "a session's file name"),
    (re.compile(r"\buncommitted\b", re.I), "an uncommitted build"),
]


def user_docs():
    yield ROOT / "README.md"
    for path in sorted((ROOT / "docs").rglob("*.md")):
        if (ROOT / "docs" / "results") in path.parents:
            continue
        yield path


def hits(path):
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        for pattern, what in PHRASES:
            match = pattern.search(line)
            # Hex digests inside code blocks (sha256 of fixtures, say) are data, not history.
            if match and not (in_code and what == "a commit hash"):
                yield number, what, match.group(0)


# A path in the repository as the docs write it: `scripts/dev/test.sh`, pipelines/x.yaml.
REPO_PATH = re.compile(r"(?<![\w./-])((?:scripts|pipelines|models|docs|tests/fixtures)/[\w./-]*\w)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def missing_paths(path):
    """Repository paths and relative links in a doc that name nothing."""
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        for name in sorted(set(REPO_PATH.findall(line))):
            if any(c in name for c in "*<>{}") or name.endswith("/..."):
                continue
            if not (ROOT / name).exists():
                yield number, name
        for target in sorted(set(LINK.findall(line))):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                yield number, target


def main():
    failures = []
    for path in user_docs():
        name = path.relative_to(ROOT)
        failures += [f"{name}:{n}: {what}: '{text}'" for n, what, text in hits(path)]
        failures += [f"{name}:{n}: names a file that does not exist: '{p}'"
                     for n, p in missing_paths(path)]
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    if lines > README_MAX_LINES:
        failures.append(f"README.md: {lines} lines, more than {README_MAX_LINES}")
    for failure in failures:
        print(failure)
    if failures:
        print(f"check_docs: {len(failures)} problem(s): state each fact with its command, machine "
              "and versions (history goes to CHANGELOG.md), and name files that exist")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
