"""Unit tests for deskml.runtime.gotemplate: Go text/template semantics and Ollama's prompt data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deskml.runtime import gotemplate
from deskml.runtime.gotemplate import TemplateError, is_go_template, render, render_prompt

CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>"
)

LLAMA32 = """{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- end }}
{{- end }}"""

SYS = "<|start_header_id|>system<|end_header_id|>\n\n"
USER = "<|start_header_id|>user<|end_header_id|>\n\n"
ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
EOT = "<|eot_id|>"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": {"unit": {"type": "string", "enum": ["c", "f"]},
                           "city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
WEATHER_TOOL_JSON = (
    '{"type":"function","function":{"name":"get_weather","description":"Get the weather",'
    '"parameters":{"type":"object","required":["city"],"properties":{'
    '"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["c","f"]}}}}}'
)
TOOLS_TEMPLATE = (
    "{{ range .Tools }}{{ json . }}\n{{ end }}"
    "{{ range .Messages }}{{ .Role }}: {{ .Content }}"
    '{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}\n'
    "{{ end }}"
)


# --- text, fields, variables ------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "data", "expected"), [
    ("plain text", {}, "plain text"),
    ("Hi {{ .Name }}!", {"Name": "Ann"}, "Hi Ann!"),
    ("{{ .A.B.C }}", {"A": {"B": {"C": 7}}}, "7"),
    ("{{.A.B}}", {"A": {"B": "tight"}}, "tight"),
    ("{{ .Missing }}", {}, "<no value>"),
    ("{{ if .Missing }}y{{ else }}n{{ end }}", {}, "n"),
    ("{{ . }}", {"k": 1}, "map[k:1]"),
    ("{{ $.Top }}", {"Top": "root"}, "root"),
    ("{{ with .A }}{{ .B }}/{{ $.Top }}{{ end }}", {"A": {"B": "in"}, "Top": "out"}, "in/out"),
    ("{{ range .L }}{{ $.System }}{{ . }};{{ end }}", {"L": [1, 2], "System": "s"}, "s1;s2;"),
    ("{{ $x := 1 }}{{ $x }}{{ $x = 2 }}{{ $x }}", {}, "12"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ $y }}{{ end }}{{ $x }}", {}, "32"),
    ('{{ $x := "a" }}{{ range .L }}{{ $x = printf "%s%v" $x . }}{{ end }}{{ $x }}', {"L": [1, 2]}, "a12"),
    ("{{ (index .L 1).Name }}", {"L": [{"Name": "a"}, {"Name": "b"}]}, "b"),
    ("{{ $m := .M }}{{ $m.K }}", {"M": {"K": "v"}}, "v"),
])
def test_fields_and_variables(template: str, data: dict[str, Any], expected: str) -> None:
    assert render(template, data) == expected


@pytest.mark.parametrize("template", [
    "{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}",
    "{{ if .X }}{{ $y := 1 }}{{ else }}{{ $y }}{{ end }}",
    "{{ range .L }}{{ $y := 1 }}{{ end }}{{ $y }}",
])
def test_variables_are_scoped_to_their_block(template: str) -> None:
    with pytest.raises(TemplateError, match="undefined variable '\\$y'"):
        render(template, {})


def test_pipeline_variables_are_visible_in_else() -> None:
    assert render("{{ if $x := .X }}yes{{ else }}[{{ $x }}]{{ end }}", {"X": 0}) == "[0]"


# --- control structures ---------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "data", "expected"), [
    ("{{ range $i, $m := .L }}{{ $i }}:{{ $m }} {{ end }}", {"L": ["a", "b"]}, "0:a 1:b "),
    ("{{ range $m := .L }}{{ $m }}{{ end }}", {"L": ["a", "b"]}, "ab"),
    ("{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ end }}", {"M": {"b": 2, "a": 1}}, "a=1;b=2;"),
    ("{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
    ("{{ range .Missing }}x{{ else }}none{{ end }}", {}, "none"),
    ("{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
    ("{{ range .L }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3, 4]}, "12"),
    ("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3]}, "13"),
    ("{{ range .A }}{{ range .B }}{{ break }}{{ end }}{{ .N }}{{ end }}",
     {"A": [{"B": [1, 2], "N": "x"}, {"B": [], "N": "y"}]}, "xy"),
    ("{{ with .A }}{{ . }}{{ else }}none{{ end }}", {"A": "v"}, "v"),
    ("{{ with .A }}{{ . }}{{ else }}none{{ end }}", {"A": ""}, "none"),
    ("{{ with .A }}a{{ else with .B }}{{ . }}{{ end }}", {"A": 0, "B": "b"}, "b"),
    ("{{ with $v := .A }}{{ $v }}{{ end }}", {"A": "w"}, "w"),
])
def test_control_structures(template: str, data: dict[str, Any], expected: str) -> None:
    assert render(template, data) == expected


@pytest.mark.parametrize(("value", "expected"), [(1, "one"), (2, "two"), (3, "other")])
def test_if_else_if_chain(value: int, expected: str) -> None:
    template = '{{ if eq .V 1 }}one{{ else if eq .V 2 }}two{{ else }}other{{ end }}'
    assert render(template, {"V": value}) == expected


@pytest.mark.parametrize(("value", "truthy"), [
    ("", False), ("x", True), (0, False), (3, True), (0.0, False), (0.5, True), (None, False),
    ([], False), ([0], True), ({}, False), ({"a": 0}, True), (False, False), (True, True),
])
def test_truthiness_matches_go(value: Any, truthy: bool) -> None:
    assert render("{{ if .V }}T{{ else }}F{{ end }}", {"V": value}) == ("T" if truthy else "F")


# --- trim markers and comments ----------------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("a  \n\t {{- .X -}} \n\n b", "aXb"),
    ("a \n{{- .X }} \nb", "aX \nb"),
    ("a \n{{ .X -}} \n b", "a \nXb"),
    ("{{- .X -}}", "X"),
    ("a{{/* a comment */}}b", "ab"),
    ("a \n {{- /* trimmed\ncomment */ -}} \n b", "ab"),
    ("{{ 3 -}} x", "3x"),
    ("{{-3}}", "-3"),  # without a space after "{{-" the dash is a minus sign
    ("{{ if .X -}}\n  yes\n{{- end }}", "yes"),
])
def test_trim_markers_and_comments(template: str, expected: str) -> None:
    assert render(template, {"X": "X"}) == expected


# --- pipelines, functions, literals --------------------------------------------------------------------

DATA: dict[str, Any] = {"L": ["a", "b", "c"], "M": {"k": "v", "n": {"x": 1}}, "S": "hello", "N": 5, "E": ""}


@pytest.mark.parametrize(("template", "expected"), [
    ('{{ "x" | printf "%s-%s" "a" }}', "a-x"),
    ("{{ .L | len }}", "3"),
    ("{{ .S | len | printf \"%d chars\" }}", "5 chars"),
    ("{{ eq (len .L) 3 }}", "true"),
    ("{{ and 1 0 }} {{ and 1 2 }} {{ or 0 \"\" }} {{ or 0 \"x\" 3 }}", "0 2  x"),
    ("{{ and .E .E.Nope }}", ""),  # and/or stop evaluating at the deciding argument
    ("{{ or .S .S.Nope }}", "hello"),
    ("{{ not 0 }} {{ not .S }}", "true false"),
    ('{{ eq .S "x" "y" "hello" }} {{ eq .S "x" "y" }}', "true false"),
    ('{{ ne .N 5 }} {{ ne .S "a" }}', "false true"),
    ('{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 2 3 }} {{ lt "a" "b" }} {{ lt 1.5 2 }}',
     "true true false false true true"),
    ("{{ len .M }} {{ len .E }}", "2 0"),
    ('{{ index .L 1 }} {{ index .M "k" }} {{ index .M "n" "x" }} {{ index .M "zz" }}', "b v 1 <no value>"),
    ("{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .L }} {{ slice .S 1 3 }}", "[b c] [b] [a b c] el"),
    ('{{ print "a" "b" 1 2 true }}', "ab1 2 true"),
    ('{{ printf "%s|%d|%v|%q|%v" "s" 42 .L "q\\"t" .M.n }}', 's|42|[a b c]|"q\\"t"|map[x:1]'),
    ('{{ printf "%d%%" 50 }} {{ printf "%d" "x" }} {{ printf "%s %s" "a" }}', "50% %!d(string=x) a %!s(MISSING)"),
    ("{{ json .L }} {{ json .M }} {{ json .N }} {{ json .Missing }}", '["a","b","c"] {"k":"v","n":{"x":1}} 5 null'),
    ('{{ json "<b> & \\"q\\"" }}', '"\\u003cb\\u003e \\u0026 \\"q\\""'),
])
def test_pipelines_and_functions(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


@pytest.mark.parametrize(("template", "expected"), [
    ('{{ "tab\\tnl\\nq\\"\\u00e9\\x41\\101" }}', 'tab\tnl\nq"éAA'),
    ("{{ `raw \\n {{ \"x\" }}\nline` }}", 'raw \\n {{ "x" }}\nline'),
    ("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 1_000 }} {{ 'a' }}", "42 -7 31 1000 97"),
    ("{{ 1.5 }} {{ 2.0 }} {{ 1e6 }} {{ 123456.0 }} {{ 0.00001 }}", "1.5 2 1e+06 123456 1e-05"),
    ("{{ true }} {{ false }} {{ print nil }}", "true false <nil>"),
    ('{{ printf "%v" (json 1e21) }} {{ json 0.000001 }} {{ json 1e-7 }} {{ json 3.0 }}', "1e+21 0.000001 1e-7 3"),
])
def test_literals(template: str, expected: str) -> None:
    assert render(template, {}) == expected


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "message"), [
    ("{{ nosuch 1 }}", "function 'nosuch' not defined"),
    ("{{ .X ", "unclosed action"),
    ("text {{ if .X", "unclosed action"),
    ("{{ end }}", "unexpected {{end}}"),
    ("{{ else }}", "unexpected {{else}}"),
    ("{{ if .X }}open", "unexpected EOF"),
    ("{{ range .X }}{{ else }}{{ else }}{{ end }}", "unexpected {{else}}"),
    ("{{ $u }}", "undefined variable '$u'"),
    ("{{ $u = 1 }}", "undefined variable '$u'"),
    ('{{ "abc }}', "unterminated quoted string"),
    ("{{ `abc }}", "unterminated raw quoted string"),
    ("{{ .X | 1 }}", "non executable command in pipeline stage 2"),
    ("{{ (len .X }}", "unclosed left paren"),
    ("{{ .X) }}", "unexpected ')'"),
    ("{{ break }}", "{{break}} outside {{range}}"),
    ("{{/* no end }}", "unclosed comment"),
    ("{{/* c */ .X }}", "comment ends before closing delimiter"),
    ("{{}}", "missing value for command"),
    ("{{ if }}{{ end }}", "missing value for if"),
    ("{{ $a, $b := 1 }}", "too many declarations"),
    ("{{ 1x }}", "bad number syntax"),
    ("{{ print @ }}", "unexpected '@'"),
    ('{{ "\\q" }}', "invalid escape"),
    ('{{ define "x" }}{{ end }}', "{{define}} is not supported"),
    ("{{ if 1 }}{{ else if }}{{ end }}", "missing value for if"),
])
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match="template: line 1: " + re.escape(message)):
        render(template, {})


@pytest.mark.parametrize(("template", "message"), [
    ("{{ 1 2 }}", "can't give argument to non-function"),
    ("{{ .X | .Y }}", "can't give argument to non-function"),
    ("{{ len 1 2 }}", "wrong number of args for len: want 1 got 2"),
    ("{{ eq 1 }}", "wrong number of args for eq"),
    ("{{ .A.B }}", "nil pointer evaluating"),
    ('{{ eq 1 "1" }}', "incompatible types for comparison"),
    ("{{ eq .L .L }}", "non-comparable type"),
    ("{{ lt true false }}", "invalid type for comparison"),
    ("{{ index .L 5 }}", "index out of range: 5"),
    ('{{ index .L "a" }}', "cannot index with type string"),
    ("{{ slice .L 2 1 }}", "invalid slice index: 2 > 1"),
    ("{{ len 3 }}", "len of type int"),
    ("{{ range .S }}{{ end }}", "range can't iterate over abc"),
    ("{{ .S.Field }}", "can't evaluate field Field in type string"),
    ("{{ printf 1 }}", "printf format must be a string"),
])
def test_execution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match="line 1: ") as info:
        render(template, {"L": [1, 2], "S": "abc"})
    assert message in str(info.value)


def test_error_reports_the_template_line() -> None:
    with pytest.raises(TemplateError, match="line 3: function 'nosuch' not defined"):
        render("one\ntwo\n{{ nosuch }}", {})
    with pytest.raises(TemplateError, match="line 2: len of type int"):
        render("one\n{{ len .N }}", {"N": 1})


# --- safety and limits ----------------------------------------------------------------------------

def test_templates_cannot_reach_python_internals() -> None:
    assert render("{{ .__class__ }}{{ .keys }}", {}) == "<no value><no value>"
    with pytest.raises(TemplateError, match="function '__import__' not defined"):
        render('{{ __import__ "os" }}', {})
    with pytest.raises(TemplateError, match="can't evaluate field __class__ in type string"):
        render("{{ .S.__class__ }}", {"S": "x"})
    with pytest.raises(TemplateError, match="can't evaluate field __dict__ in type templateMessage"):
        render_prompt("{{ range .Messages }}{{ .__dict__ }}{{ end }}", system=None, prompt="hi")


def test_output_is_capped() -> None:
    big = "x" * (1024 * 1024)
    with pytest.raises(TemplateError, match="output exceeds"):
        render("{{ range .L }}{{ $.S }}{{ end }}", {"L": list(range(11)), "S": big})


def test_string_growth_is_capped() -> None:
    template = '{{ $s := "0123456789" }}{{ range 40 }}{{ $s = printf "%s%s" $s $s }}{{ end }}'
    with pytest.raises(TemplateError, match="printf result exceeds"):
        render(template, {})


def test_work_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gotemplate, "MAX_STEPS", 1000)
    with pytest.raises(TemplateError, match="exceeds 1000 steps"):
        render("{{ range 1000000000 }}{{ end }}", {})
    with pytest.raises(TemplateError, match="exceeds 1000 steps"):
        render("{{ range .L }}{{ range $.L }}{{ end }}{{ end }}", {"L": list(range(100))})


@pytest.mark.parametrize("template", [
    "{{ if 1 }}" * 100 + "x" + "{{ end }}" * 100,
    "{{ range .L }}" * 100 + "{{ end }}" * 100,
    "{{ print " + "(print " * 100 + "1" + ")" * 100 + " }}",
])
def test_nesting_is_capped(template: str) -> None:
    with pytest.raises(TemplateError, match="nests too deeply"):
        render(template, {"L": [1]})


def test_deeply_nested_data_is_an_error_not_a_crash() -> None:
    data: dict[str, Any] = {}
    for _ in range(10_000):
        data = {"a": data}
    with pytest.raises(TemplateError, match="nests too deeply"):
        render("{{ json .D }}", {"D": data})


# --- Ollama templates -----------------------------------------------------------------------------

def test_chatml_full_render_keeps_the_closing_tag() -> None:
    data = {"System": "You are helpful.", "Prompt": "Hi", "Response": ""}
    assert render(CHATML, data) == (
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<|im_end|>"
    )


def test_chatml_prompt_with_system_stops_after_response() -> None:
    assert render_prompt(CHATML, system="You are helpful.", prompt="Hi") == (
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chatml_prompt_without_system() -> None:
    assert render_prompt(CHATML, system=None, prompt="Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_chatml_messages_map_to_prompt_and_system() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render_prompt(CHATML, system=None, messages=messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml_earlier_turns_render_in_full() -> None:
    messages = [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                {"role": "user", "content": "C"}]
    assert render_prompt(CHATML, system=None, messages=messages) == (
        "<|im_start|>user\nA<|im_end|>\n<|im_start|>assistant\nB<|im_end|>"
        "<|im_start|>user\nC<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml_response_prefill() -> None:
    assert render_prompt(CHATML, system=None, prompt="Hi", response="Sure,") == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure,"
    )


def test_template_without_response_gets_one_appended() -> None:
    messages = [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                {"role": "user", "content": "C"}]
    assert render_prompt("{{ .Prompt }}", system=None, messages=messages) == "ABC"


def test_llama32_conversation_with_system() -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "How are you?"}]
    assert render_prompt(LLAMA32, system="Be nice.", messages=messages) == (
        SYS + "Be nice." + EOT + USER + "Hi" + EOT + ASSISTANT + "Hello" + EOT
        + USER + "How are you?" + EOT + ASSISTANT
    )


def test_llama32_single_prompt_without_system() -> None:
    expected = USER + "Hi" + EOT + ASSISTANT
    assert render_prompt(LLAMA32, system=None, prompt="Hi") == expected
    assert render_prompt(LLAMA32, system=None, messages=[{"role": "user", "content": "Hi"}]) == expected


def test_llama32_generate_style_system_and_prompt() -> None:
    assert render_prompt(LLAMA32, system="S", prompt="Hi") == SYS + "S" + EOT + USER + "Hi" + EOT + ASSISTANT


def test_llama32_last_assistant_message_is_left_open() -> None:
    assert render_prompt(LLAMA32, system=None, prompt="Hi", response="Hel") == USER + "Hi" + EOT + ASSISTANT + "Hel"


def test_model_system_only_fills_in_when_messages_have_none() -> None:
    messages = [{"role": "system", "content": "Custom"}, {"role": "user", "content": "Hi"}]
    assert render_prompt(LLAMA32, system="Default", messages=messages) == (
        SYS + "Custom" + EOT + USER + "Hi" + EOT + ASSISTANT
    )


def test_consecutive_same_role_messages_are_merged() -> None:
    messages = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    assert render_prompt(LLAMA32, system=None, messages=messages) == USER + "one\n\ntwo" + EOT + ASSISTANT


def test_tools_and_tool_calls() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "22C", "tool_name": "get_weather"},
    ]
    assert render_prompt(TOOLS_TEMPLATE, system=None, messages=messages, tools=[WEATHER_TOOL]) == (
        WEATHER_TOOL_JSON + "\n"
        "user: Weather?\n"
        'assistant: {"name": "get_weather", "arguments": {"city":"Paris"}}\n'
        "tool: 22C\n"
    )


def test_tool_call_arguments_as_json_string_and_sorted_keys() -> None:
    call = {"function": {"name": "f", "arguments": '{"unit": "c", "city": "Paris", "n": 2.0}'}}
    out = render_prompt("{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments }}{{ end }}{{ end }}",
                        system=None, messages=[{"role": "assistant", "content": "", "tool_calls": [call]}])
    assert out == '{"city":"Paris","n":2,"unit":"c"}'


def test_tools_print_as_a_json_array() -> None:
    template = "[AVAILABLE_TOOLS] {{ $.Tools }}[/AVAILABLE_TOOLS]{{ range .Messages }}{{ .Content }}{{ end }}"
    out = render_prompt(template, system=None, prompt="Hi", tools=[WEATHER_TOOL])
    assert out == "[AVAILABLE_TOOLS] [" + WEATHER_TOOL_JSON + "][/AVAILABLE_TOOLS]Hi"


def test_tool_properties_range_like_command_r() -> None:
    template = (
        "{{ range .Tools }}def {{ .Function.Name }}("
        "{{ range $name, $p := .Function.Parameters.Properties }}{{ $name }}: {{ $p.Type }}, {{ end }})"
        " # {{ .Function.Description }}; {{ .Function.Parameters.Required }}{{ end }}"
        "{{ range .Messages }}{{ end }}"
    )
    assert render_prompt(template, system=None, prompt="x", tools=[WEATHER_TOOL]) == (
        "def get_weather(city: string, unit: string, ) # Get the weather; [city]"
    )


def test_no_tools_is_falsy_and_prints_null() -> None:
    template = "{{ if .Tools }}tools{{ else }}none{{ end }} {{ .Tools }}{{ range .Messages }}{{ end }}"
    assert render_prompt(template, system=None, prompt="x") == "none null"


def test_plain_dicts_encode_with_json() -> None:
    assert render("{{ range .Tools }}{{ json . }}{{ end }}", {"Tools": [{"b": 1, "a": [True, None]}]}) == (
        '{"a":[true,null],"b":1}'
    )


def test_unknown_message_field_is_an_error() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Colour in type templateMessage"):
        render_prompt("{{ range .Messages }}{{ .Colour }}{{ end }}", system=None, prompt="x")


def test_message_fields_default_to_go_zero_values() -> None:
    template = "{{ range .Messages }}[{{ .Role }}|{{ .Thinking }}|{{ if .ToolCalls }}calls{{ end }}]{{ end }}"
    assert render_prompt(template, system=None, prompt="x") == "[user||]"


@pytest.mark.parametrize(("think", "expected"), [
    (None, "|false|false"), (True, "T|medium|true"), (False, "|false|true"), ("high", "T|high|true"),
])
def test_think_flags(think: bool | str | None, expected: str) -> None:
    template = "{{ if .Think }}T{{ end }}|{{ or .ThinkLevel false }}|{{ .IsThinkSet }}"
    assert render_prompt(template, system=None, prompt="", think=think) == expected


# --- Unicode --------------------------------------------------------------------------------------

def test_cyrillic_and_emoji_round_trip() -> None:
    text = "Привет, мир 👋"
    template = '{{ .T }}|{{ printf "%q" .T }}|{{ json .T }}|{{ len .T }}|{{ slice "héllo" 0 3 }}'
    assert render(template, {"T": text}) == f'{text}|"{text}"|"{text}"|25|hé'
    assert render("Ответ: {{ .A }} ✅", {"A": "да 🎉"}) == "Ответ: да 🎉 ✅"


def test_unicode_through_a_chat_template() -> None:
    assert render_prompt(CHATML, system="Отвечай кратко 🙂", prompt="Как дела? 🚀") == (
        "<|im_start|>system\nОтвечай кратко 🙂<|im_end|>\n"
        "<|im_start|>user\nКак дела? 🚀<|im_end|>\n<|im_start|>assistant\n"
    )


# --- detection ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("{{ .Prompt }}", True),
    ("{{- if .System }}x{{ end }}", True),
    ("no template here", False),
    ("{% if messages %}{{ messages[0] }}{% endif %}", False),
    ("{{ unclosed", False),
])
def test_is_go_template(text: str, expected: bool) -> None:
    assert is_go_template(text) is expected
