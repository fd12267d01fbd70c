"""The action format and the bounded prompt shared by evaluation and training data."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.bench.prompt import (
    ACT_NAMES,
    SYSTEM_PROMPT,
    Action,
    ActionError,
    PromptEvent,
    PromptSettings,
    PromptState,
    action_json_schema,
    build_messages,
    build_repair_messages,
    messages_chars,
    parse_action,
    render_action,
)


def test_render_is_compact_sorted_json_and_round_trips() -> None:
    action = Action(act="search", arg="def process_event(")
    text = render_action(action)
    assert text == '{"act":"search","arg":"def process_event("}'
    assert parse_action(text) == action
    assert parse_action(f"  {text}\n") == action


def test_render_matches_the_training_target_serialization() -> None:
    action_text = pytest.importorskip("pipeline.data.action_text").action_text
    for act in ACT_NAMES:
        action = Action.model_validate({"act": act, "arg": "checks/check_1.py"})
        assert render_action(action) == action_text(action.model_dump())


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty output"),
        ("\n\n\n", "empty output"),
        ("c c c c", "not JSON"),
        ('["read", "x"]', "expected a JSON object"),
        ('{"act":"delete","arg":"x"}', "field 'act'"),
        ('{"act":"read","arg":"x","why":"because"}', "field 'why'"),
        ('{"act":"read","arg":"' + "x" * 300 + '"}', "field 'arg'"),
        ('{"act":"read","arg":"x"} trailing', "not JSON"),
    ],
)
def test_invalid_outputs_get_short_errors(raw: str, fragment: str) -> None:
    with pytest.raises(ActionError) as info:
        parse_action(raw)
    assert fragment in str(info.value)
    assert len(str(info.value)) <= 200


def test_messages_are_system_then_user_with_task_state_and_window() -> None:
    events = [PromptEvent(f'{{"act":"list","arg":"d{i}"}}', "ok", f"obs {i}") for i in range(10)]
    messages = build_messages("Find X.", PromptState(10, 3, 1, 2), events, PromptSettings(window=4))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    user = messages[1]["content"]
    assert user.startswith("TASK: Find X.\nSTATE: tick 10 | failures 3 | streak 1 | checks 2")
    assert "d9" in user and "d6" in user and "d5" not in user  # only the last 4 events
    assert user.endswith("ACTION?")


def test_prompt_size_is_bounded_whatever_the_history() -> None:
    settings = PromptSettings()
    bound = settings.max_chars()
    assert bound is not None
    rng = random.Random(7)
    sizes = []
    for tick in range(200):
        events = [
            PromptEvent("x" * rng.randrange(300), "E" * rng.randrange(60), "o\n" * rng.randrange(50_000))
            for _ in range(rng.randrange(1, 30))
        ]
        base = build_messages("t" * rng.randrange(2000), PromptState(tick, tick, tick, tick), events, settings)
        repair = build_repair_messages(base, "garbage " * 500, "not JSON " * 100, settings)
        sizes.append(messages_chars(repair))
        assert messages_chars(base) <= messages_chars(repair) <= bound
    assert max(sizes) > bound // 2  # the bound is not vacuous


def test_unbounded_settings_keep_everything() -> None:
    settings = PromptSettings.unbounded()
    assert settings.max_chars() is None
    events = [PromptEvent("a", "ok", "observation " * 100) for _ in range(50)]
    small = messages_chars(build_messages("t", PromptState(0, 0, 0, 0), events[:5], settings))
    large = messages_chars(build_messages("t", PromptState(0, 0, 0, 0), events, settings))
    assert large > 9 * small


def test_action_schema_names_the_verbs() -> None:
    schema = action_json_schema()
    assert set(schema["properties"]["act"]["enum"]) == set(ACT_NAMES)
    assert schema["additionalProperties"] is False
    json.dumps(schema)
