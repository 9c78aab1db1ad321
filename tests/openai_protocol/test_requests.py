"""Request bodies, URLs and the response readers of the OpenAI protocol."""

from __future__ import annotations

import json

from ccai.openai_protocol import (
    STREAM_DONE,
    Usage,
    api_path,
    chat_completion_request,
    choice_text,
    completion_request,
    fixed_length_fields,
    read_usage,
    v1_url,
)


def test_v1_url_accepts_either_base() -> None:
    assert v1_url("http://h:1", "models") == "http://h:1/v1/models"
    assert v1_url("http://h:1/v1/", "completions") == "http://h:1/v1/completions"
    assert api_path("chat") == "chat/completions" and api_path("completions") == "completions"


def test_streaming_completion_asks_for_usage() -> None:
    body = completion_request(model="m", prompt="hi", max_tokens=4, temperature=0.0, stream=True, seed=3)
    assert body == {
        "model": "m",
        "max_tokens": 4,
        "temperature": 0.0,
        "prompt": "hi",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 3,
    }
    assert list(body) == ["model", "max_tokens", "temperature", "prompt", "stream", "stream_options", "seed"]
    quiet = completion_request(model="m", prompt="hi", max_tokens=4, stream=True, include_usage=False)
    assert "stream_options" not in quiet and "temperature" not in quiet


def test_token_id_prompt_and_plain_request() -> None:
    body = completion_request(model="m", prompt=(5, 6), max_tokens=2)
    assert body == {"model": "m", "max_tokens": 2, "prompt": [5, 6]}


def test_chat_request_with_fixed_length() -> None:
    body = chat_completion_request(
        model="m", messages=[{"role": "user", "content": "x"}], max_tokens=7, output_control="ignore_eos"
    )
    assert body["messages"] == [{"role": "user", "content": "x"}] and body["ignore_eos"] is True
    assert "stream" not in body


def test_fixed_length_fields() -> None:
    assert fixed_length_fields("ignore_eos", 9) == {"ignore_eos": True}
    assert fixed_length_fields("none", 9) == {}
    config = json.loads(fixed_length_fields("generation_config", 9)["generation_config"])
    assert config == {"max_new_tokens": 9, "min_new_tokens": 9, "do_sample": False}


def test_choice_text_reads_each_shape() -> None:
    assert choice_text({"choices": [{"text": "a", "finish_reason": None}]}, "completions") == ("a", None)
    assert choice_text({"choices": [{"delta": {"content": "b"}}]}, "chat") == ("b", None)
    assert choice_text({"choices": [{"message": {"content": "c"}, "finish_reason": "stop"}]}, "chat") == (
        "c",
        "stop",
    )
    # Missing or mistyped fields read as no text, never as an exception.
    assert choice_text({"choices": []}, "chat") == ("", None)
    assert choice_text({"choices": ["x"]}, "completions") == ("", None)
    assert choice_text({"choices": [{"text": 5}]}, "completions") == ("", None)
    assert choice_text({}, "completions") == ("", None)


def test_read_usage() -> None:
    assert read_usage({"choices": []}) is None
    assert read_usage({"usage": None}) is None
    assert read_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}) == Usage(
        prompt_tokens=3, completion_tokens=4
    )
    assert read_usage({"usage": {"completion_tokens": "4", "prompt_tokens": True}}) == Usage(
        prompt_tokens=None, completion_tokens=None
    )
    assert STREAM_DONE == "[DONE]"
