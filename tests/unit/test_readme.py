"""The README's two commands are the ones CI and users run; keep them from drifting apart."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_command(label: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"# {label}"))
    return lines[start + 1].strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert _readme_command("test") in ci_lines


def test_readme_opens_with_the_run_command() -> None:
    assert "timecredits up --demo" in _readme_command("run")
    head = (ROOT / "README.md").read_text()[:1500]
    assert "# run" in head and "# test" in head
