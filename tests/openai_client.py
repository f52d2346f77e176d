"""The official `openai` Python client against `lumen serve`: a streamed answer about an image
(sent as a data: URL) with usage, then a non-streamed one. Usage: openai_client.py BASE_URL IMAGE.
Exits non-zero on any mismatch; tests/serve.rs runs it when LUMEN_OPENAI_PYTHON is set."""

import base64
import sys

import openai


def main() -> None:
    base_url, image = sys.argv[1], sys.argv[2]
    with open(image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    models = client.models.list()
    model = models.data[0].id
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "Describe this image."},
            ],
        }
    ]
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage, ids = [], None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content is not None:
                pieces.append(choice.delta.content)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    assert len(ids) == 1, ids
    assert finish in ("stop", "length"), finish
    assert usage is not None and usage.completion_tokens > 0, usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
    streamed = "".join(pieces)

    full = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
    assert full.object == "chat.completion", full
    assert full.choices[0].message.role == "assistant"
    assert full.choices[0].message.content == streamed, (full.choices[0].message.content, streamed)
    assert full.usage.completion_tokens == usage.completion_tokens

    try:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
        )
        raise AssertionError("an http image URL was accepted")
    except openai.BadRequestError as e:
        assert "not fetched" in str(e), e

    print(f"openai {openai.__version__}: streamed {len(pieces)} pieces, {usage.completion_tokens} tokens, "
          f"finish {finish}; non-streamed answer identical; http image URL refused with 400")


if __name__ == "__main__":
    main()
