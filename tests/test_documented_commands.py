"""Every command the documentation shows runs as printed.

Commands are collected from the README, CONTRIBUTING, docs/, the config files and presets (their comments) and the
Snakefile: fenced ```bash blocks line by line, inline code spans that start with a command, and comment lines
that show one.  Each is checked the cheapest way that still fails when the command is wrong:

- ``snakemake ...``: a dry run (``-n``) of exactly those arguments in a copy of the project, so a target swallowed
  by ``--configfile`` or a missing file fails here;
- ``python <script or -m module> ...``: the program's ``--help``, and every option the command uses must be one
  the program accepts;
- ``python -m pytest ...``: its collection (``--collect-only``);
- anything else (``grep``, ``mv``, ``cd``): a shell syntax check;
- a command that only works on a finished run names the test that runs it (``RUN_ELSEWHERE``).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_workflow import copy_project

REPO = Path(__file__).resolve().parents[1]
MARKDOWN = ["README.md", "CONTRIBUTING.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
COMMENTED = ["config.yaml", "Snakefile", "tests/smoke/config.yaml",
             *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow").rglob("*.yaml")),
             *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]
PROGRAMS = ("snakemake", "python", "python3", "pip")
# Commands that need a finished run, by the test that runs them on the finished smoke run.
RUN_ELSEWHERE = {
    "--report": "test_snakemake_report_archive_holds_captioned_outputs",
}


def fenced_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def inline_commands(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [span for span in re.findall(r"`([^`\n]+)`", text)
            if re.match(r"(snakemake|python3?|\.venv/bin/\w+) ", span)]


def comment_commands(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*#\s+((?:snakemake|python3?|\.venv/bin/\w+) [^#\n]*)", text, re.M)]


def documented_commands() -> dict[str, set[str]]:
    """Command -> the files that show it."""
    found: dict[str, set[str]] = {}
    for name in MARKDOWN:
        text = (REPO / name).read_text()
        for cmd in fenced_commands(text) + inline_commands(text):
            found.setdefault(cmd, set()).add(name)
    for name in COMMENTED:
        for cmd in comment_commands((REPO / name).read_text()):
            found.setdefault(cmd, set()).add(name)
    return found


def steps(command: str) -> list[list[str]]:
    """The programs a line runs, as argument lists: a line of programs chained with && splits there; a line of
    shell syntax (a loop, a redirection) stays whole, for the shell to check."""
    parts = [shlex.split(part) for part in command.split("&&")]
    if all(part and Path(part[0]).name in PROGRAMS for part in parts):
        return parts
    return [["bash", "-n", "-c", command]]


COMMANDS = documented_commands()


def test_the_documentation_shows_the_main_commands():
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/snakemake --cores 8 all" in COMMANDS
    assert any("workflow/presets/quick.yaml" in c for c in COMMANDS)
    assert len(COMMANDS) > 15


def test_ci_runs_exactly_the_readmes_test_line():
    readme = fenced_commands((REPO / "README.md").read_text())
    test_line = next(c for c in readme if c.endswith("-m pytest"))
    assert test_line in (REPO / ".ci" / "run").read_text().splitlines()


def test_commands_that_need_a_finished_run_name_a_test_that_runs_them():
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for marker, test in RUN_ELSEWHERE.items():
        assert any(marker in c for c in COMMANDS), f"no documented command uses {marker}: drop it from RUN_ELSEWHERE"
        assert f"def {test}(" in tests, f"{test}, which runs the documented {marker} command, does not exist"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("documented"))


def with_data_root(args: list[str], data_root) -> list[str]:
    """The arguments with data_root pointing at the mirror (the copy's relative ../shared/data does not exist)."""
    value = f"data_root={data_root}"
    if "--config" in args:
        i = args.index("--config")
        return [*args[:i + 1], value, *args[i + 1:]]
    return [*args, "--config", value]


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=lambda c: c[:80])
def test_documented_command_runs_as_printed(command, project, data_root):
    where = ", ".join(sorted(COMMANDS[command]))
    if any(marker in command for marker in RUN_ELSEWHERE):
        return  # held to the test that runs it by test_commands_that_need_a_finished_run_name_a_test_that_runs_them
    for args in steps(command):
        check(args, f"`{command}` ({where})", project, data_root)


def check(args: list[str], what: str, project: Path, data_root) -> None:
    program, rest = Path(args[0]).name, args[1:]
    if program == "snakemake":
        proc = subprocess.run([sys.executable, "-m", "snakemake", *with_data_root(rest, data_root), "-n"],
                              cwd=project, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{what} fails as a dry run:\n{(proc.stdout + proc.stderr)[-2000:]}"
    elif program == "pip" or rest[:2] == ["-m", "venv"]:
        return  # the install line itself: .ci/run runs it from a clean clone
    elif rest[:2] == ["-m", "pytest"]:
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *rest[2:]], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{what} collects no tests:\n{proc.stdout[-2000:]}"
    elif program.startswith("python"):
        target, options = (rest[:2], rest[2:]) if rest[0] == "-m" else (rest[:1], rest[1:])
        proc = subprocess.run([sys.executable, *target, "--help"], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        assert proc.returncode == 0, f"{what}: `{' '.join(target)} --help` fails:\n{proc.stderr[-2000:]}"
        for option in (a.split("=")[0] for a in options if a.startswith("--")):
            assert option in proc.stdout, f"{what} uses {option}, which {' '.join(target)} does not take"
    else:
        proc = subprocess.run(args, capture_output=True, text=True)
        assert proc.returncode == 0, f"{what} is not valid shell: {proc.stderr}"
