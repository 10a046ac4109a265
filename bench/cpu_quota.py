"""Query embedding under a pod's CPU limit: the platform's thread budget against ONNX Runtime's own pool, side by side.

Kubernetes enforces `resources.limits.cpu` as a cgroup quota (CPU time per 100 ms period). ONNX Runtime sizes its
pool to the machine's cores, not to that quota; the platform sizes it to the quota (knowledge/cpu_budget.py). Each
case runs in a process of its own inside a real cgroup (tests/cpu_quota.py), the cases alternating, and embeds the
bench's Click questions one at a time, `--gap` ms apart, as the MCP server embeds agents' questions:

- the platform's budget (what the MCP server now does): one thread per CPU of the quota;
- ONNX Runtime's default pool on this machine (ORT_INTRA_OP_NUM_THREADS=0: one thread per core);
- eight threads, ONNX Runtime's default on a node of eight physical cores, which pods of a real cluster run on
  (on a smaller machine they also share its cores: the figure then mixes that with the quota).

It prints p50 / p95 per case, the periods the kernel throttled, and the ratio of each case's p95 to the budget's
(goal: the budget is the fastest under a quota, ratio ≥ 1 for the others). Needs root and a writable cgroup
hierarchy with the cpu controller (tests/cpu_quota.py says why not otherwise).

Run: .venv/bin/python bench/cpu_quota.py [--quotas 1,2] [--runs 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from knowledge import percentiles  # bench/knowledge.py, beside this script

from tests.cpu_quota import cpu_quota, unavailable
from tests.helpers import REPO_ROOT

QUESTIONS = Path(__file__).resolve().parent / "data" / "click-questions.json"
CASES = (
    ("platform budget", {}),
    ("ONNX Runtime default", {"ORT_INTRA_OP_NUM_THREADS": "0"}),
    ("8 threads", {"ORT_INTRA_OP_NUM_THREADS": "8"}),
)


def _run(quota_cpus: float, env: dict[str, str], texts: Path, runs: int, gap_ms: float) -> tuple[list[float], int, int]:
    """(timings in ms, ONNX Runtime workers, throttled periods) of one probe process inside a new quota group."""
    probe = [sys.executable, "-m", "tests.embedding_probe", "--runs", str(runs), "--texts", str(texts)]
    with cpu_quota(quota_cpus) as quota:
        done = subprocess.run(
            quota.command([*probe, "--gap", str(gap_ms / 1000)]),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        throttled = quota.throttled_periods()
    if done.returncode != 0:
        raise SystemExit(f"probe failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.splitlines()[-1])
    return list(out["ms"]), int(out["onnx_workers"]), throttled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quotas", default="1,2", help="comma-separated CPU limits to measure under")
    parser.add_argument("--runs", type=int, default=200, help="timed embeddings per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per case, alternating with the others")
    parser.add_argument("--gap", type=float, default=5.0, help="ms between two questions")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"[cpu quota] skipped: {reason}")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    questions = [q["q"] for q in json.loads(QUESTIONS.read_text(encoding="utf-8"))]
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "questions.txt"
        texts.write_text("\n".join(questions), encoding="utf-8")
        for cpus in (float(q) for q in args.quotas.split(",") if q.strip()):
            timings: dict[str, list[float]] = {label: [] for label, _ in CASES}
            workers: dict[str, int] = {}
            throttled: dict[str, int] = {label: 0 for label, _ in CASES}
            for round_ in range(args.rounds):
                order = CASES if round_ % 2 == 0 else tuple(reversed(CASES))
                for label, env in order:
                    ms, workers[label], periods = _run(cpus, env, texts, args.runs, args.gap)
                    timings[label] += ms
                    throttled[label] += periods
            base = percentiles(timings[CASES[0][0]])[1]
            print(
                f"[cpu quota] one query embedding under a {cpus:g}-CPU quota ({len(questions)} Click questions,"
                f" {args.gap:g} ms apart, {args.rounds} × {args.runs} per case, {os.cpu_count()} CPUs here):"
            )
            for label, _ in CASES:
                p50, p95 = percentiles(timings[label])
                print(
                    f"[cpu quota]   {label:22} {workers[label] + 1:2} thread(s): p50 {p50:6.1f} ms  p95 {p95:6.1f} ms,"
                    f" throttled in {throttled[label]:4} periods; p95 / the budget's {p95 / base:5.2f}"
                )


if __name__ == "__main__":
    main()
