"""The in-process engine on the embedded SmolLM2, served for real by uvicorn on a loopback port.

Every expected output comes from ``model.generate(do_sample=False)`` on the same model object, run
in the test; the engine must reproduce it token for token, streamed or not, alone or with seven
other requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("torch", reason="needs the [torch] extra")
pytest.importorskip("fastapi", reason="needs the [service] extra")

from tests.service.conftest import serve

from ccai.openai_protocol import (
    STREAM_DONE,
    SamplingParams,
    SseParser,
    TransformersEngine,
    chat_completion_request,
    completion_request,
    create_engine_app,
    fixed_length_fields,
)

pytestmark = [pytest.mark.torch, pytest.mark.extra("service")]

NAME = "smollm2-test"


@pytest.fixture(scope="module")
def loaded() -> tuple[Any, Any]:
    """The embedded SmolLM2-135M-Instruct and its tokenizer, loaded once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ccai._embedded_model import embedded_model_dir

    # One torch thread: the engine shares two cores with the event loop (and other processes); spinning
    # intra-op threads slow generation down tenfold there.
    torch.set_num_threads(1)
    path = embedded_model_dir()
    model = AutoModelForCausalLM.from_pretrained(str(path))
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def server(loaded: tuple[Any, Any]) -> Iterator[tuple[str, TransformersEngine]]:
    model, tokenizer = loaded
    engine = TransformersEngine(model, tokenizer, model_name=NAME)
    with serve(create_engine_app(engine)) as url:
        yield url, engine


def reference(loaded: tuple[Any, Any], ids: list[int], max_new_tokens: int) -> tuple[str, int, int]:
    """(text, generated tokens, last token) of model.generate(do_sample=False)."""
    import torch

    model, tokenizer = loaded
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new_tokens)
    new = out[0, len(ids) :].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), len(new), new[-1]


def chat_ids(loaded: tuple[Any, Any], content: str) -> list[int]:
    tokenizer = loaded[1]
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def stream(url: str, path: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """POST a streaming request; the chunks and the raw event data, in order."""
    chunks: list[dict[str, Any]] = []
    data: list[str] = []
    parser = SseParser()
    with httpx.Client(timeout=120) as http, http.stream("POST", f"{url}/v1/{path}", json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for block in resp.iter_raw():
            for event in parser.feed(block):
                data.append(event.data)
                if event.data.strip() != STREAM_DONE:
                    chunks.append(json.loads(event.data))
    assert data[-1] == STREAM_DONE
    return chunks, data


PROMPTS = ["What is 2+2?", "Name three colours.", "Write a haiku about the sea."]


@pytest.mark.parametrize("content", PROMPTS[:2])
def test_chat_greedy_equals_generate(
    server: tuple[str, TransformersEngine], loaded: Any, content: str
) -> None:
    url, _ = server
    ids = chat_ids(loaded, content)
    text, count, last = reference(loaded, ids, 48)
    body = chat_completion_request(
        model=NAME, messages=[{"role": "user", "content": content}], max_tokens=48, temperature=0.0
    )
    resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["object"] == "chat.completion" and doc["model"] == NAME
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": text}
    eos = loaded[0].generation_config.eos_token_id
    assert doc["choices"][0]["finish_reason"] == ("stop" if last == eos else "length")
    assert doc["usage"] == {
        "prompt_tokens": len(ids),
        "completion_tokens": count,
        "total_tokens": len(ids) + count,
    }


def test_completions_text_and_token_ids(server: tuple[str, TransformersEngine], loaded: Any) -> None:
    url, _ = server
    prompt = "The capital of France is"
    ids = list(loaded[1](prompt).input_ids)
    text, count, _ = reference(loaded, ids, 20)
    for p in (prompt, ids):
        body = completion_request(model=NAME, prompt=p, max_tokens=20, temperature=0.0)
        doc = httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()
        assert doc["object"] == "text_completion"
        assert doc["choices"][0]["text"] == text
        assert doc["usage"]["prompt_tokens"] == len(ids) and doc["usage"]["completion_tokens"] == count


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_stream_concatenation_equals_the_complete_answer(
    server: tuple[str, TransformersEngine], loaded: Any, api: str
) -> None:
    url, _ = server
    messages = [{"role": "user", "content": PROMPTS[2]}]
    if api == "chat":
        path, ids = "chat/completions", chat_ids(loaded, PROMPTS[2])
        build = lambda s: chat_completion_request(  # noqa: E731
            model=NAME, messages=messages, max_tokens=40, stream=s, temperature=0.0
        )
    else:
        path, ids = "completions", list(loaded[1]("Once upon a time").input_ids)
        build = lambda s: completion_request(  # noqa: E731
            model=NAME, prompt="Once upon a time", max_tokens=40, stream=s, temperature=0.0
        )
    whole = httpx.post(f"{url}/v1/{path}", json=build(False), timeout=120).json()
    chunks, _ = stream(url, path, build(True))
    key = "delta" if api == "chat" else None
    pieces = [
        (c["choices"][0][key].get("content") or "") if key else c["choices"][0]["text"]
        for c in chunks
        if c["choices"]
    ]
    complete = whole["choices"][0]["message"]["content"] if api == "chat" else whole["choices"][0]["text"]
    assert "".join(pieces) == complete == reference(loaded, ids, 40)[0]
    assert sum(1 for p in pieces if p) > 10  # one event per text delta, not one buffered blob
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == whole["choices"][0]["finish_reason"] and set(finishes[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert all(c.get("usage") is None for c in chunks[:-1])


def test_streaming_is_not_buffered(server: tuple[str, TransformersEngine]) -> None:
    """The first delta arrives while the generation is still running."""
    url, engine = server
    body = completion_request(
        model=NAME, prompt="Count:", max_tokens=200, stream=True, output_control="ignore_eos"
    )
    parser = SseParser()
    with httpx.Client(timeout=120) as http, http.stream("POST", f"{url}/v1/completions", json=body) as resp:
        blocks = resp.iter_raw()  # kept referenced: leaving a for loop over it would close the stream
        for block in blocks:
            if any(json.loads(e.data)["choices"][0]["text"] for e in parser.feed(block)):
                break
        assert http.get(f"{url}/health").json()["pending"] == 1
    # Closing the stream cancels the generation: the slot comes back well before 200 tokens.
    deadline = time.monotonic() + 5
    while engine.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.pending == 0


@pytest.mark.parametrize("control", ["ignore_eos", "generation_config"])
def test_fixed_length_outputs(server: tuple[str, TransformersEngine], control: Any) -> None:
    url, _ = server
    # "What is 2+2?" ends after 12 tokens when EOS is honoured.
    for n in (1, 37):
        body = chat_completion_request(
            model=NAME,
            messages=[{"role": "user", "content": "What is 2+2?"}],
            max_tokens=n,
            output_control=control,
        )
        doc = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
        assert doc["usage"]["completion_tokens"] == n and doc["choices"][0]["finish_reason"] == "length"
        chunks, _ = stream(
            url, "chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
        )
        assert chunks[-1]["usage"]["completion_tokens"] == n
    assert fixed_length_fields(control, 37)  # the benchmark sends something for this control


def test_min_tokens(server: tuple[str, TransformersEngine]) -> None:
    url, _ = server
    body = chat_completion_request(
        model=NAME, messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=60
    )
    short = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()["usage"][
        "completion_tokens"
    ]
    doc = httpx.post(
        f"{url}/v1/chat/completions", json={**body, "min_tokens": short + 10}, timeout=120
    ).json()
    assert doc["usage"]["completion_tokens"] >= short + 10


def test_stop_strings(server: tuple[str, TransformersEngine], loaded: Any) -> None:
    url, _ = server
    ids = chat_ids(loaded, PROMPTS[1])
    text, _, _ = reference(loaded, ids, 40)
    stop = text[10:14]
    assert stop.strip() and text.find(stop) == 10
    body = chat_completion_request(
        model=NAME, messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=40, temperature=0
    )
    body["stop"] = [stop, "never appears §§"]
    doc = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
    assert doc["choices"][0]["message"]["content"] == text[:10]
    assert doc["choices"][0]["finish_reason"] == "stop"
    chunks, _ = stream(url, "chat/completions", {**body, "stream": True})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == text[:10]


def test_seeded_sampling_is_reproducible(server: tuple[str, TransformersEngine]) -> None:
    url, _ = server
    body = completion_request(
        model=NAME, prompt="My favourite animal is", max_tokens=24, temperature=1.0, seed=7
    )
    texts = [
        httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]
        for _ in range(2)
    ]
    assert texts[0] == texts[1]
    other = httpx.post(f"{url}/v1/completions", json={**body, "seed": 8}, timeout=120).json()
    assert other["choices"][0]["text"] != texts[0]


def test_eight_concurrent_requests(server: tuple[str, TransformersEngine], loaded: Any) -> None:
    url, _ = server
    contents = [f"Give me one fact about the number {i}." for i in range(8)]
    expected = [reference(loaded, chat_ids(loaded, c), 24)[0] for c in contents]

    async def one(http: httpx.AsyncClient, i: int) -> str:
        body = chat_completion_request(
            model=NAME, messages=[{"role": "user", "content": contents[i]}], max_tokens=24, temperature=0.0
        )
        if i % 2:
            doc = (await http.post(f"{url}/v1/chat/completions", json=body)).json()
            return str(doc["choices"][0]["message"]["content"])
        body["stream"] = True
        parser, out = SseParser(), []
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
            async for block in resp.aiter_raw():
                for e in parser.feed(block):
                    if e.data != STREAM_DONE:
                        out.append(json.loads(e.data)["choices"][0]["delta"].get("content") or "")
        return "".join(out)

    async def main() -> list[str]:
        async with httpx.AsyncClient(timeout=300) as http:
            return await asyncio.gather(*(one(http, i) for i in range(8)))

    assert asyncio.run(main()) == expected


def test_openai_sdk(server: tuple[str, TransformersEngine], loaded: Any) -> None:
    openai = pytest.importorskip("openai", reason="needs the [gateway] extra")
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [NAME]
    text = reference(loaded, chat_ids(loaded, PROMPTS[0]), 30)[0]
    messages = [{"role": "user", "content": PROMPTS[0]}]
    done = client.chat.completions.create(model=NAME, messages=messages, max_tokens=30, temperature=0)
    assert done.choices[0].message.content == text and done.usage is not None
    parts = client.chat.completions.create(
        model=NAME,
        messages=messages,
        max_completion_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(parts)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    legacy = client.completions.create(model=NAME, prompt="Hello", max_tokens=5, temperature=0)
    assert legacy.usage is not None and legacy.usage.completion_tokens <= 5
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="other", messages=messages)


BAD: list[tuple[str, Any, str | None]] = [
    ("chat/completions", b"{not json", None),
    ("chat/completions", b"[1, 2]", None),
    ("chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("chat/completions", {"model": NAME, "messages": []}, "messages"),
    ("chat/completions", {"model": NAME, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0]"),
    (
        "chat/completions",
        {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6},
        None,
    ),
    (
        "chat/completions",
        {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        "max_tokens",
    ),
    ("chat/completions", {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    (
        "chat/completions",
        {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "temperature": 5},
        "temperature",
    ),
    ("chat/completions", {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "stop": 3}, "stop"),
    ("completions", {"model": NAME, "prompt": ""}, "prompt"),
    ("completions", {"model": NAME, "prompt": [10**9]}, None),
    ("completions", {"model": NAME, "prompt": ["a", "b"]}, "prompt"),
    ("completions", {"model": NAME, "prompt": "x", "generation_config": "{bad"}, "generation_config"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD)
def test_bad_requests_get_openai_errors(
    server: tuple[str, TransformersEngine], path: str, body: Any, param: str | None
) -> None:
    url, engine = server
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    resp = httpx.post(f"{url}/v1/{path}", timeout=30, headers={"content-type": "application/json"}, **kwargs)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and "Traceback" not in resp.text
    assert error["param"] == param
    assert engine.pending == 0


def test_overload_is_503(loaded: Any) -> None:
    model, tokenizer = loaded
    engine = TransformersEngine(model, tokenizer, model_name=NAME, max_pending=1)
    with serve(create_engine_app(engine)) as url:
        body = completion_request(
            model=NAME, prompt="Count:", max_tokens=100, stream=True, output_control="ignore_eos"
        )
        with (
            httpx.Client(timeout=60) as http,
            http.stream("POST", f"{url}/v1/completions", json=body) as first,
        ):
            assert first.status_code == 200
            second = http.post(f"{url}/v1/completions", json={**body, "stream": False})
            assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_sampling_params_defaults() -> None:
    assert SamplingParams(max_tokens=4).greedy and SamplingParams(max_tokens=4, temperature=0.0).greedy
    assert not SamplingParams(max_tokens=4, temperature=0.7).greedy


def test_incremental_decoding_and_stop_holdback(loaded: Any) -> None:
    """Multi-byte characters split over tokens appear whole; a partial stop string is held back."""
    from ccai.openai_protocol._inprocess import _Job

    tokenizer = loaded[1]
    text = "Grüße 😀 — naïve café, 東京! end"
    ids = tokenizer(text, add_special_tokens=False).input_ids

    class Loop:
        """Stands in for the event loop and the request's queue: records what the worker hands over."""

        def __init__(self) -> None:
            self.items: list[Any] = []

        def call_soon_threadsafe(self, fn: Any, item: Any) -> None:
            fn(item)

        def put_nowait(self, item: Any) -> None:
            self.items.append(item)

    for stop, expected in (((), text), ((", 東",), "Grüße 😀 — naïve café")):
        loop = Loop()
        job = _Job(
            prompt_ids=[1],
            params=SamplingParams(max_tokens=len(ids), stop=stop),
            loop=loop,  # type: ignore[arg-type]
            queue=loop,  # type: ignore[arg-type]
            tokenizer=tokenizer,
            eos_ids=frozenset({2}),
        )
        stopped = [job.on_token(i) for i in ids]
        job.finish()
        pieces = [d.text for d in loop.items]
        assert "".join(pieces) == expected
        assert all("\ufffd" not in p for p in pieces)
        assert loop.items[-1].finish_reason == ("stop" if stop else "length")
        assert any(stopped) == bool(stop)
