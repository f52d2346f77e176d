"""Regenerates tests/data/chat/render_reference.json: chat templates rendered by transformers.

Not run by CI: the JSON it writes is committed. Needs transformers (5.x) and jinja2. Run from the
repository root:  python tests/data/chat/make_reference.py
The Qwen3-VL template is read from the built-in constant in src/io/chat.rs, so the test checks
that minijinja renders it exactly as transformers' jinja2 setup does.
"""

import json
import os
import re

import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

# Python-flavoured constructs HF templates use: str methods, dict methods, tojson options, loop vars.
PYCOMPAT = """{%- for m in messages %}
{%- set c = m.content if m.content is string else '' %}
[{{ m.role.upper() }}|{{ c.strip() }}|{{ c.lstrip('H') }}|{{ c.rstrip('!') }}|{{ c.startswith('He') }}|{{ c.endswith(('x', '!')) }}]
{{- c.split(' ') | join('/') }};{{ c.split() | length }};{{ c.replace('l', 'L') }};{{ c.find('o') }};{{ c.count('l') }}
{%- endfor %}
{%- for k, v in extra.items() %} {{ k }}={{ v if v is string or v is number else v | length }}{% endfor %}
{{ extra.get('a') }} {{ extra.get('zz', 'dflt') }} {{ extra.keys() | list | length }}
{{ extra | tojson }}
{{ extra | tojson(indent=2) }}
{{ extra | tojson(separators=(',', ':')) }}
{{ extra | tojson(ensure_ascii=True) }}"""


def qwen3_vl_template():
    return open(os.path.join(ROOT, "src/io/qwen3_vl_chat_template.jinja"), encoding="utf-8").read()


def msg(role, *parts):
    """Mirrors Message::to_json: a lone text part is a plain string, else a list of parts."""
    if len(parts) == 1 and isinstance(parts[0], str):
        return {"role": role, "content": parts[0]}
    return {
        "role": role,
        "content": [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image"} for p in parts],
    }


IMG = object()
TOOL = {"function": {"description": "Look up the weather", "name": "get_weather",
                     "parameters": {"properties": {"city": {"type": "string"}}, "required": ["city"],
                                    "type": "object"}}, "type": "function"}

CASES = [
    ("system_user_image_assistant", [msg("system", "You are a helpful assistant."),
                                     msg("user", IMG, "Describe this image."),
                                     msg("assistant", "A cat sits on a wooden floor.")], False, {}),
    ("user_image_generation_prompt", [msg("user", IMG, "What is in the picture?")], True, {}),
    ("plain_text_turns", [msg("user", "Hello!"), msg("assistant", "Hi. How can I help?"),
                          msg("user", "Tell me a joke.")], True, {}),
    ("two_images_with_vision_ids", [msg("user", "Compare ", IMG, " and ", IMG, ".")], True, {"add_vision_id": True}),
    ("system_parts_and_unicode", [msg("system", "Réponds en français. ", "日本語も可。"),
                                  msg("user", "Ça va ? 🙂 <b>&</b>\n\ttabs")], True, {}),
    ("tools", [msg("system", "Be brief."), msg("user", "Weather in Paris?")], True, {"tools": [TOOL]}),
    ("tool_responses", [msg("user", "Weather?"), msg("assistant", "Checking."), msg("tool", "{\"temp\": 21}"),
                        msg("tool", "sunny"), msg("user", "Thanks")], True, {}),
    ("pycompat", [msg("user", "  Hello world!  "), msg("assistant", "Hello, hello")], False,
     {"template": PYCOMPAT, "extra": {"a": 1, "b": "é", "c": [1, 2.5, None, True], "d": {}}}),
]


def main():
    qwen = qwen3_vl_template()
    out = []
    for name, messages, gen, kwargs in CASES:
        kwargs = dict(kwargs)
        template = kwargs.pop("template", qwen)
        rendered, _ = render_jinja_template([messages], chat_template=template, add_generation_prompt=gen, **kwargs)
        out.append({"name": name, "messages": messages, "add_generation_prompt": gen, "extra": kwargs,
                    "template": None if template is qwen else template, "expected": rendered[0]})
    doc = {"generator": "tests/data/chat/make_reference.py", "transformers": transformers.__version__, "cases": out}
    with open(os.path.join(HERE, "render_reference.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
