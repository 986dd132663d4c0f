#!/usr/bin/env python3
"""Writes the reference renderings the tests compare against.

Each *.jinja here is rendered with each conversation in conversations.json by Python's jinja2, configured the
way Hugging Face transformers renders tokenizer.chat_template (apply_chat_template): trim_blocks,
lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now;
tools=None when there are none. strftime_now is pinned to 2024-07-26 so the output is stable.
Output: <template>.<conversation>.txt, or .error.txt: 'raised: <message>' or 'failed: <python error>'.

Run it after adding a template or a conversation: python3 render-reference.py (needs jinja2).
"""
import json, pathlib, datetime
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import Extension, loopcontrols
from jinja2 import nodes

here = pathlib.Path(__file__).parent
FIXED_NOW = datetime.datetime(2024, 7, 26, 10, 30, 0)

class Raised(jinja2.exceptions.TemplateError):
    """What raise_exception throws, told apart from Jinja2's own errors (undefined, sandbox)."""


def raise_exception(message):
    raise Raised(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

class Generation(Extension):
    """{% generation %}...{% endgeneration %}: transformers' AssistantTracker; renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body).set_lineno(lineno)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: FIXED_NOW.strftime(fmt)

conversations = json.loads((here / "conversations.json").read_text(encoding="utf-8"))
for path in sorted(here.glob("*.jinja")):
    try:
        template = env.from_string(path.read_text(encoding="utf-8"))
    except jinja2.exceptions.TemplateSyntaxError as e:
        print(f"{path.name}: jinja2 cannot parse it: {e}")
        continue
    for name, conv in conversations.items():
        base = here / f"{path.stem}.{name}"
        for stale in (base.with_suffix(".txt"), pathlib.Path(str(base) + ".error.txt")):
            stale.unlink(missing_ok=True)
        try:
            out = template.render(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                                  add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
            pathlib.Path(str(base) + ".txt").write_text(out, encoding="utf-8", newline="")
        except Raised as e:
            # raise_exception's message, which the renderer must reproduce.
            pathlib.Path(str(base) + ".error.txt").write_text("raised: " + str(e), encoding="utf-8", newline="")
        except Exception as e:
            # The template itself cannot handle this input (e.g. iterating None): any render error is right.
            pathlib.Path(str(base) + ".error.txt").write_text("failed: " + type(e).__name__ + ": " + str(e), encoding="utf-8", newline="")
