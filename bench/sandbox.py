"""The agent sandbox's start-up cost per agent run, measured side by side with the bare agent process.

The same commands are started through the runner's one launch function (`runner.launch_agent`), once bare and
once inside the sandbox exactly as a run does it (bubblewrap namespaces, the mount plan, the pids cgroup or
RLIMIT_NPROC, the memory cap), alternating, and timed from spawn to exit:

- `true`: the sandbox's fixed cost, as near to nothing else as possible;
- `python -c pass`: an interpreter start, what scripted agents pay;
- a 2 s no-op agent (`sleep 2`): the goal of issue 12 is an added cost under 0.1 s, or 5 %, of it.

Each sandboxed start runs with the egress relay on, as a run does (egress.py: the agent's own network namespace,
the runner's relay thread, and the forwarder started inside before the agent); `--no-egress` measures without it.

Run: .venv/bin/python bench/sandbox.py [rounds]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.agents import egress
from codexk8s_pipelines.agents import sandbox as sb
from codexk8s_pipelines.agents.agent_env import build_agent_env
from codexk8s_pipelines.agents.runner import AgentLaunch, launch_agent

GOAL_SECONDS = 0.1
GOAL_RATIO = 0.05


def _once(command: list[str], workspace: Path, bwrap: str | None, relay: bool = True) -> float:
    env = build_agent_env({"PATH": "/usr/local/bin:/usr/bin:/bin"}, home=sb.AGENT_HOME if bwrap else str(workspace))
    started = time.perf_counter()
    if bwrap is None:
        agent = launch_agent(command, workspace, env, subprocess.DEVNULL, AgentLaunch(None, None))
        agent.communicate()
    else:
        allowed = egress.allow_list(None, {}, ["127.0.0.1:4000", "127.0.0.1:8765"])  # a model and an MCP port
        with sb.process_cap(512, 2 * 1024**3) as cap, egress.open_relay(allowed) as door:
            plan = sb.SandboxPlan(workspace=workspace, memory_bytes=2 * 1024**3, egress=door.mount() if relay else None)
            agent = launch_agent(command, workspace, env, subprocess.DEVNULL, AgentLaunch(bwrap, plan, cap))
            agent.communicate()
    elapsed = time.perf_counter() - started
    if agent.proc.returncode != 0:
        raise SystemExit(f"{command} exited {agent.proc.returncode} ({'sandboxed' if bwrap else 'bare'})")
    return elapsed


def main(rounds: int = 15, relay: bool = True) -> None:
    bwrap = sb.bwrap_binary({})
    sb.probe(bwrap)
    cases = {
        "true": ["true"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "no-op agent (sleep 2)": ["sleep", "2"],
    }
    print(f"sandbox start-up cost, median of {rounds} alternated runs each (bwrap: {bwrap}; egress relay: {relay})")
    print(f"{'agent':<24} {'bare s':>8} {'sandboxed s':>12} {'added s':>8} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "checkout"
        workspace.mkdir()
        for name, command in cases.items():
            n = rounds if "sleep" not in name else max(3, rounds // 5)
            _once(command, workspace, bwrap, relay)  # warm caches (the /etc scan is once per process)
            bare, boxed = [], []
            for _ in range(n):
                bare.append(_once(command, workspace, None))
                boxed.append(_once(command, workspace, bwrap, relay))
            b, s = statistics.median(bare), statistics.median(boxed)
            print(f"{name:<24} {b:>8.3f} {s:>12.3f} {s - b:>8.3f} {s / b:>7.2f}x")
            if "sleep" in name:
                added = s - b
                verdict = "met" if added < GOAL_SECONDS or added / b < GOAL_RATIO else "MISSED"
                print(f"goal (< {GOAL_SECONDS} s or < {GOAL_RATIO:.0%} of a 2 s no-op agent): {verdict}, "
                      f"added {added:.3f} s = {added / b:.1%}")  # fmt: skip


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    main(int(numbers[0]) if numbers else 15, relay="--no-egress" not in sys.argv[1:])
