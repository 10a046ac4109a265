"""The outcome judge, the usage parsers and the unreachable-model watch on output lines the pinned agents printed
(recorded from the real programs against the scripted model): fast, no agent program needed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_watch import UnreachableWatch, probe_endpoint
from codexk8s_pipelines.agents.outcome import Evidence, judge
from codexk8s_pipelines.agents.transcript import describe_line, read_transcript
from codexk8s_pipelines.agents.usage import Usage, aider_usage, parse_usage
from tests.helpers import free_port

CODEX_OK = [
    '{"type":"thread.started","thread_id":"01a248a1-d18f-7de3-a492-995929bfc624"}',
    '{"type":"turn.started"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc \'echo hi\'",'
    '"aggregated_output":"","exit_code":0,"status":"completed"}}',
    '{"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[{"path":"/w/notes.md",'
    '"kind":"add"}],"status":"completed"}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Done."}}',
    '{"type":"turn.completed","usage":{"input_tokens":3600,"cached_input_tokens":600,"cache_write_input_tokens":0,'
    '"output_tokens":240,"reasoning_output_tokens":48}}',
]
CODEX_TOOLS_FAILED = [
    '{"type":"thread.started","thread_id":"t-1"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"echo hi",'
    '"aggregated_output":"bwrap: execvp codex-linux-sandbox: No such file or directory\\n","exit_code":1,'
    '"status":"failed"}}',
    '{"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[],"status":"failed"}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"I changed src/app.py."}}',
    '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}',
]
CODEX_DOWN = [
    '{"type":"thread.started","thread_id":"t-2"}',
    '{"type":"turn.started"}',
    '{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}',
]
CODEX_500 = [
    '{"type":"error","message":"We’re currently experiencing high demand, which may cause temporary errors."}',
    '{"type":"turn.failed","error":{"message":"We’re currently experiencing high demand, which may cause temporary'
    ' errors."}}',
]
CLAUDE_REFUSED = [
    '{"type":"system","subtype":"init","session_id":"s-1","model":"claude-sonnet-4-6"}',
    '{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: Connection'
    ' refused"}]},"session_id":"s-1"}',
    '{"type":"result","subtype":"success","is_error":true,"terminal_reason":"api_error","result":"API Error:'
    ' Connection refused","session_id":"s-1","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}',
]


def _judge(lines: list[str], kind: str = "codex", **kw: object) -> tuple[str, str, str | None]:
    outcome = judge(Evidence(read_transcript(kind, lines), **{"exit_code": 0, "report_status": "done", **kw}))
    return outcome.verdict, outcome.reason, outcome.diagnosis


def test_a_run_that_did_its_work_succeeds_and_reports_its_own_usage() -> None:
    assert _judge(CODEX_OK, changed_files=["notes.md"])[:2] == ("succeeded", "done")
    usage = parse_usage("codex", read_transcript("codex", CODEX_OK))
    assert (usage.input, usage.cached_input, usage.output, usage.reasoning) == (3600, 600, 240, 48)
    assert usage.cost_usd is None and "cost unknown" in usage.summary()  # Codex gives no cost: unknown, never 0


def test_every_tool_failed_and_nothing_changed_is_agent_tools_failed_with_its_claim() -> None:
    verdict, reason, diagnosis = _judge(CODEX_TOOLS_FAILED)
    assert (verdict, reason) == ("failed", "agent_tools_failed")
    assert diagnosis and "I changed src/app.py." in diagnosis and "exit 1" in diagnosis
    # The same failures beside a real change are a partial success, judged on the result file.
    assert _judge(CODEX_TOOLS_FAILED, changed_files=["a.md"])[0] == "succeeded"


def test_no_model_answer_after_connection_errors_is_model_unreachable() -> None:
    assert _judge(CODEX_DOWN, exit_code=None, report_status=None, report_problem="no result file")[1] == (
        "model_unreachable"
    )
    assert _judge(CLAUDE_REFUSED, "claude-code", exit_code=1)[1] == "model_unreachable"  # is_error, "success"
    verdict, reason, diagnosis = _judge(CODEX_500, exit_code=1)
    assert (verdict, reason) == ("failed", "model_error") and "high demand" in (diagnosis or "")


def test_the_result_file_decides_between_done_blocked_and_no_result() -> None:
    blocked = _judge(CODEX_OK, report_status="blocked", report_diagnosis="Which currency?", changed_files=["a"])
    assert blocked == ("blocked", "agent_blocked", "Which currency?")
    missing = _judge(CODEX_OK, report_status=None, report_problem="the agent wrote no result file")
    assert missing[:2] == ("failed", "no_result") and "Done." in (missing[2] or "")
    custom = judge(Evidence(read_transcript("custom", []), 0, report_problem="missing", require_result=False))
    assert custom.verdict == "succeeded"  # a user's own command is not held to the prompt's contract


def test_usage_of_a_resumed_session_counts_this_run_only() -> None:
    before = Usage("codex", input=2400, cached_input=400, output=160, reasoning=32)
    after = Usage("codex", input=3600, cached_input=600, output=240, reasoning=48)
    assert after.since(before) == Usage("codex", input=1200, cached_input=200, output=80, reasoning=16)
    claude = Usage("claude-code", input=1000, output=80, cost_usd=0.01704).since(Usage("claude-code", cost_usd=0.01278))
    assert claude.cost_usd == 0.00426 and claude.input == 1000  # Claude's cost is the session's, its tokens the run's


def test_aider_usage_comes_from_its_local_analytics_log() -> None:
    lines = [
        '{"event": "launched", "properties": {}}',
        '{"event": "message_send", "properties": {"prompt_tokens": 2344, "completion_tokens": 20, "cost": 0.0044,'
        ' "total_cost": 0.004382}}',
    ]
    usage = aider_usage(lines)
    assert (usage.input, usage.output, usage.cost_usd, usage.model_requests) == (2344, 20, 0.004382, 1)
    assert not aider_usage([]).known and "unknown" in aider_usage([]).summary()


@pytest.mark.timeout(20)
def test_aiders_analytics_log_is_read_as_a_file_the_agent_wrote(tmp_path: Path) -> None:
    """The log is in the agent's HOME: a FIFO (or a link to one) there hung the runner, bytes that are not UTF-8 or a
    line nested past the decoder's depth crashed it, and a link would have been followed to a file of the host."""
    send = '{"event": "message_send", "properties": {"prompt_tokens": 100, "completion_tokens": 5, "total_cost": 0.5}}'
    empty = read_transcript("aider", [])
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    usage = parse_usage("aider", empty, fifo)
    assert not usage.known and "not a regular file" in usage.source
    host = tmp_path / "host-file.jsonl"
    host.write_text(send + "\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(host)
    usage = parse_usage("aider", empty, link)
    assert not usage.known and "symlink" in usage.source
    log = tmp_path / "aider-analytics.jsonl"
    log.write_bytes(b"\xff\xfe not utf-8\n" + b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n" + send.encode())
    usage = parse_usage("aider", empty, log)
    assert (usage.input, usage.output, usage.cost_usd) == (100, 5, 0.5)
    lower = '{"event": "message_send", "properties": {"prompt_tokens": -100, "completion_tokens": 1, "total_cost": -9}}'
    log.write_text(send + "\n" + lower + "\n")
    usage = parse_usage("aider", empty, log)
    assert (usage.input, usage.output, usage.cost_usd) == (100, 6, 0.5)  # a negative count or cost is no count
    assert not parse_usage("aider", empty, tmp_path / "absent.jsonl").known  # aider sent nothing: no log


def test_the_log_shows_events_in_short_form_and_never_the_raw_prompt_echo() -> None:
    shown = [describe_line("codex", line) for line in CODEX_OK]
    assert "$ /bin/bash -lc 'echo hi' → exit 0 (completed)" in shown and "message: Done." in shown
    assert describe_line("codex", '{"type":"turn.started"}') is None


def test_the_watch_stops_an_agent_stuck_on_an_unreachable_model_and_not_one_that_recovered() -> None:
    fired = threading.Event()
    watch = UnreachableWatch("codex", 0.2, fired.set)
    watch.feed(CODEX_DOWN[2])
    assert fired.wait(5) and watch.verdict and "Reconnecting" in watch.verdict

    recovered = threading.Event()
    watch = UnreachableWatch("codex", 0.3, recovered.set)
    watch.feed(CODEX_DOWN[2])
    watch.feed(CODEX_OK[-1])  # a model answer came after all
    time.sleep(0.5)
    assert not recovered.is_set() and watch.verdict is None


def test_the_endpoint_probe_names_what_cannot_be_reached() -> None:
    port = free_port()
    cause = probe_endpoint(f"http://127.0.0.1:{port}/v1", timeout=2)
    assert cause and f"127.0.0.1:{port}" in cause
    assert probe_endpoint(None) is None  # the agent's own provider: nothing to probe here
