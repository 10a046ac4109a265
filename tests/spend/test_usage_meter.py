"""The runner's running meter over the agents' real event formats: a cap passed ends the run at that report, a
loop ends it after N turns, an agent without turn events is never a loop."""

from __future__ import annotations

import json
from decimal import Decimal

from codexk8s_pipelines.agents.usage_meter import UsageMeter
from codexk8s_pipelines.domain.spend import Budgets, Limit, Price, PriceTable

PRICES = PriceTable("USD", {"gpt-5.5": Price(Decimal("1.25"), Decimal("0.125"), Decimal(10))})


def _codex_turn(inp: int, cached: int, out: int) -> str:
    return json.dumps(
        {"type": "turn.completed", "usage": {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out}}
    )


def _codex_command(cmd: str) -> str:
    item = {"id": "i", "type": "command_execution", "command": cmd, "status": "completed", "exit_code": 0}
    return json.dumps({"type": "item.completed", "item": item})


def test_codex_usage_sums_and_stops_at_the_report_that_passes_the_cap() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(tokens=25_000)))
    assert meter.feed(json.dumps({"type": "thread.started", "thread_id": "t"})) is None
    assert meter.feed(_codex_turn(10_000, 2_000, 1_000)) is None
    stop = meter.feed(_codex_turn(12_000, 0, 3_000))
    assert stop is not None and stop.reason == "budget_exceeded"
    assert "26,000 tokens spent" in stop.detail or "26,000" in stop.detail
    assert (meter.usage.input, meter.usage.cached_input, meter.usage.output) == (
        22_000,
        2_000,
        4_000,
    )
    # 20,000 fresh × 1.25 + 2,000 cached × 0.125 + 4,000 × 10, per million
    assert meter.cost() == Decimal("0.065250")


def test_money_cap_from_the_price_table() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(cost=Decimal("0.05"))))
    assert meter.feed(_codex_turn(10_000, 0, 3_000)) is None  # $0.0425
    stop = meter.feed(_codex_turn(1_000, 0, 1_000))  # $0.05375
    assert stop is not None and stop.reason == "budget_exceeded" and "$0.0538" in stop.detail


def test_claude_counts_a_message_once_and_takes_the_final_total() -> None:
    meter = UsageMeter("claude-code", "claude-x", PRICES, Budgets(per_run=Limit(tokens=10_000)))
    msg = {
        "id": "msg_1",
        "model": "claude-x",
        "usage": {"input_tokens": 100, "cache_read_input_tokens": 900, "output_tokens": 50},
        "content": [{"type": "text", "text": "hi"}],
    }
    line = json.dumps({"type": "assistant", "message": msg, "session_id": "s"})
    assert meter.feed(line) is None and meter.feed(line) is None  # two content blocks of one message
    assert meter.usage.input == 1000 and meter.usage.output == 50
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "total_cost_usd": 0.02,
        "num_turns": 1,
        "usage": {"input_tokens": 200, "cache_read_input_tokens": 900, "output_tokens": 70},
    }
    assert meter.feed(json.dumps(result)) is None
    assert meter.usage.input == 1100 and meter.usage.output == 70
    assert meter.cost() == Decimal("0.020000")  # no price for claude-x: the agent's own USD figure


def test_the_same_call_n_turns_in_a_row_is_a_loop() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(), loop_turns=3)
    assert meter.feed(_codex_command("pytest -q")) is None
    assert meter.feed(_codex_command("pytest -q")) is None
    stop = meter.feed(_codex_command("pytest -q"))
    assert stop is not None and stop.reason == "agent_loop" and "3 turns in a row" in stop.detail


def test_reading_without_changing_is_a_loop_for_claude() -> None:
    meter = UsageMeter("claude-code", None, PRICES, Budgets(), loop_turns=3)
    for i in range(5):
        block = {"type": "tool_use", "id": f"t{i}", "name": "Read", "input": {"file_path": f"/w/f{i}.py"}}
        msg = {"id": f"m{i}", "model": "claude-x", "content": [block]}
        assert meter.feed(json.dumps({"type": "assistant", "message": msg})) is None
    block = {"type": "tool_use", "id": "t9", "name": "Grep", "input": {"pattern": "x"}}
    stop = meter.feed(json.dumps({"type": "assistant", "message": {"id": "m9", "model": "c", "content": [block]}}))
    assert stop is not None and stop.reason == "agent_loop" and "no change" in stop.detail


def test_varied_work_is_not_a_loop_and_aider_is_never_judged() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(), loop_turns=3)
    assert all(meter.feed(_codex_command(f"step {i}")) is None for i in range(20))
    aider = UsageMeter("aider", None, PRICES, Budgets(), loop_turns=1)
    assert all(aider.feed(line) is None for line in ["Applied edit to a.py"] * 5)
    assert aider.usage.known is False


def test_lines_written_into_the_agents_output_neither_lower_the_sum_nor_break_the_meter() -> None:
    """A tool command runs as the same user as the agent program and can write into its output (/proc/<pid>/fd/1).
    Counts that are negative, NaN or infinite are not counts, a line nested past the decoder's depth is not an
    event, and none of them may lower the running sum or raise out of the meter (that ended the runner's reading
    of the agent's output: nothing metered it afterwards)."""
    meter = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(tokens=25_000)))
    assert meter.feed(_codex_turn(10_000, 0, 1_000)) is None
    forged = [
        _codex_turn(-1_000_000, 0, -1_000_000),
        '{"type":"turn.completed","usage":{"input_tokens":1e400,"output_tokens":-1e400}}',
        '{"type":"turn.completed","usage":{"input_tokens":true,"output_tokens":"9"}}',
    ]
    for line in forged:
        assert meter.feed(line) is None
    assert (meter.usage.input, meter.usage.output) == (10_000, 1_000)
    stop = meter.feed(_codex_turn(14_000, 0, 1_000))
    assert stop is not None and stop.reason == "budget_exceeded"
    # Not JSON at all (no agent prints NaN; the nesting is past the decoder's depth): a report that cannot be read
    for line in [
        '{"type":"turn.completed","usage":{"input_tokens":NaN,"output_tokens":Infinity}}',
        '{"type":"turn.completed","usage":' + "[" * 100_000 + "]" * 100_000 + "}",
    ]:
        capped = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(tokens=25_000)))
        stop = capped.feed(line)
        assert stop is not None and stop.reason == "usage_unreadable" and capped.usage.input is None


def test_a_claude_report_that_says_less_does_not_lower_the_running_usage() -> None:
    meter = UsageMeter("claude-code", "claude-x", PRICES, Budgets(per_run=Limit(tokens=10_000)))

    def message(mid: str, inp: int, out: int) -> str:
        msg = {"id": mid, "model": "claude-x", "usage": {"input_tokens": inp, "output_tokens": out}, "content": []}
        return json.dumps({"type": "assistant", "message": msg})

    def result(inp: int, out: int, cost: float) -> str:
        return json.dumps(
            {"type": "result", "total_cost_usd": cost, "usage": {"input_tokens": inp, "output_tokens": out}}
        )

    assert meter.feed(message("m1", 6_000, 500)) is None
    assert meter.feed(message("m1", 1, 1)) is None  # the same message shown again, smaller: it keeps its highest
    assert meter.feed(result(1, 1, 0.0)) is None  # a session total below what was reported on the way
    assert (meter.usage.input, meter.usage.output) == (6_000, 500)
    assert meter.feed(result(7_000, 600, 0.4)) is None  # a higher total counts
    assert (meter.usage.input, meter.usage.output, meter.usage.cost_usd) == (7_000, 600, 0.4)
    assert meter.feed(result(1, 1, 0.0)) is None  # and a lower one after it does not undo it
    assert (meter.usage.input, meter.usage.output, meter.usage.cost_usd) == (7_000, 600, 0.4)
    stop = meter.feed(message("m2", 4_000, 100))  # 6,500 + 4,100 of the two messages
    assert stop is not None and stop.reason == "budget_exceeded"


def test_a_usage_report_made_unreadable_ends_a_capped_run_and_is_noted_otherwise() -> None:
    """A few bytes without a newline, written into the agent program's output just before a usage report, glue onto
    the report's line: it no longer reads as JSON, and the report was dropped as if it had never been made."""
    glued = '{"x":"' + _codex_turn(90_000, 0, 1_000)
    capped = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(tokens=25_000)))
    assert capped.feed('{"x":"' + _codex_command("ls")) is None  # no usage report in it: nothing lost
    assert capped.feed("warning: a plain text line") is None
    stop = capped.feed(glued)
    assert stop is not None and stop.reason == "usage_unreadable" and "cap cannot be kept" in stop.detail
    uncapped = UsageMeter("codex", "gpt-5.5", PRICES, Budgets())
    assert uncapped.feed(glued) is None and uncapped.unreadable == 1  # noted in the run's result (agent_notes)
    claude = UsageMeter("claude-code", "claude-x", PRICES, Budgets(per_run=Limit(tokens=25_000)))
    line = json.dumps({"type": "assistant", "message": {"id": "m", "model": "x", "usage": {"input_tokens": 5}}})
    stop = claude.feed("garbage" + line)
    assert stop is not None and stop.reason == "usage_unreadable"


def test_odd_fields_and_huge_or_negative_claude_counts_neither_lower_the_usage_nor_raise() -> None:
    """A forged Claude message under a new id with negative counts took the running sum to 0; a 400-digit integer
    raised OverflowError, and a `usage` (or `message`, `item`, `part`) that is not an object raised AttributeError:
    out of the runner's reading thread, which then left the agent unmetered."""
    meter = UsageMeter("claude-code", "claude-x", PRICES, Budgets(per_run=Limit(tokens=10_000)))

    def message(mid: str, inp: object, out: object) -> str:
        msg = {"id": mid, "model": "claude-x", "usage": {"input_tokens": inp, "output_tokens": out}, "content": []}
        return json.dumps({"type": "assistant", "message": msg})

    assert meter.feed(message("a", 9_000, 500)) is None
    assert meter.feed(message("forged", -9_000, -500)) is None
    assert (meter.usage.input, meter.usage.output) == (9_000, 500)
    huge = message("huge", 1, 1).replace('"input_tokens": 1', '"input_tokens": 1' + "0" * 400)
    assert meter.feed(huge) is None and (meter.usage.input, meter.usage.output) == (9_000, 501)  # past MAX_COUNT: none
    for line in [
        '{"type":"assistant","message":"x"}',
        '{"type":"assistant","message":{"usage":[1],"content":"y"}}',
        '{"type":"result","usage":"z"}',
    ]:
        meter.feed(line)
    stop = meter.feed(message("b", 1_000, 0))
    assert stop is not None and stop.reason == "budget_exceeded"
    codex = UsageMeter("codex", "gpt-5.5", PRICES, Budgets(per_run=Limit(tokens=10_000)))
    for line in [
        '{"type":"turn.completed","usage":{"input_tokens":1' + "0" * 400 + "}}",
        '{"type":"turn.completed","usage":[1]}',
        '{"type":"item.completed","item":"x"}',
    ]:
        assert codex.feed(line) is None
    opencode = UsageMeter("opencode", "m", PRICES, Budgets(per_run=Limit(tokens=10_000)))
    for line in ['{"type":"step_finish","part":5}', '{"type":"step_finish","part":{"tokens":{"cache":"c"}}}']:
        assert opencode.feed(line) is None


def test_a_forged_prefix_holding_the_event_words_does_not_hide_a_report_and_sums_stay_bounded() -> None:
    from codexk8s_pipelines.agents.usage import MAX_COUNT, Usage

    claude = UsageMeter("claude-code", "claude-x", PRICES, Budgets(per_run=Limit(tokens=10_000)))
    msg = {"id": "m", "model": "claude-x", "usage": {"input_tokens": 50_000, "output_tokens": 1}, "content": []}
    stop = claude.feed('"type":"assistant"' + json.dumps({"type": "assistant", "message": msg}))
    assert stop is not None and stop.reason == "usage_unreadable"
    assert claude.feed('  "type": "result",') is None  # a pretty-printed line on stderr holds no report
    biggest = Usage("codex", input=MAX_COUNT, output=MAX_COUNT, cost_usd=9e6)
    total = biggest.plus(biggest)  # millions of forged maximal reports stay within the database's columns
    assert (total.input, total.output, total.cost_usd) == (MAX_COUNT, MAX_COUNT, 1e7)
