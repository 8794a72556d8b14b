"""docs/config.md is generated from the config dataclasses; it must be what the script writes."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_config_md_is_the_generated_reference(load_script):
    expected = load_script("config_doc").render()
    actual = (ROOT / "docs" / "config.md").read_text()
    assert actual == expected, "docs/config.md is stale: run python scripts/config_doc.py --write"


def test_every_config_field_has_a_comment(load_script):
    text = load_script("config_doc").render()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    missing = [line for line in rows if line.endswith("|  |")]
    assert missing == []


def test_comments_follow_their_field(load_script):
    doc = load_script("config_doc")

    class Probe:
        a: int = 1  # first
        # continues the first

        # leads the bare one
        b: int = 2
        c: int = 3  # inside a wrapped default

    import dataclasses

    probe = dataclasses.dataclass(Probe)
    comments = doc._own_comments(probe)
    assert comments["b"] == "leads the bare one"
    assert comments["c"] == "inside a wrapped default"
    assert comments["a"].startswith("first")
