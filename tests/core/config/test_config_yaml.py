"""Reading YAML safely: malformed and hostile files are refused with the line that is wrong."""

from __future__ import annotations

import pytest

from shipyard.core.config import ConfigInvalid, Position, YamlDocument, parse_yaml
from shipyard.core.config.yamlsafe import MAX_DEPTH, yaml_string


def refuse(content: str | bytes) -> str:
    """Parse ``content``, expect it to be refused, and return the message."""
    with pytest.raises(ConfigInvalid) as caught:
        parse_yaml(content, "shipyard.yaml")
    return str(caught.value)


def parse(text: str) -> YamlDocument:
    """Parse text that must be accepted."""
    return parse_yaml(text, "shipyard.yaml")


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


class TestRefused:
    """Each malformed file is refused with a message that says where and why."""

    def test_syntax_error_names_line_and_column(self) -> None:
        message = refuse("project: demo\nowner: ada: lovelace\n")
        assert message.startswith("shipyard.yaml:2:11: YAML syntax error: mapping values")
        assert "hint:" in message

    def test_unclosed_list_names_where_it_started(self) -> None:
        message = refuse("project: demo\ntags: [a, b\nother: 1\n")
        assert message.startswith("shipyard.yaml:3:")
        assert "starts on line 2" in message

    def test_tab_indentation(self) -> None:
        message = refuse("project: demo\nservice:\n\tcommand: run\n")
        assert message.startswith("shipyard.yaml:3:1: YAML syntax error")
        assert "tabs" in message

    def test_empty_file(self) -> None:
        assert refuse("").startswith("shipyard.yaml:1:1: the file is empty")

    def test_only_whitespace(self) -> None:
        assert "the file is empty" in refuse("\n   \n\n")

    def test_only_comments(self) -> None:
        message = refuse("# project: demo\n# nothing else\n")
        assert message.startswith("shipyard.yaml:1:1: the file holds only comments")
        assert "project: my-service" in message

    def test_binary_junk(self) -> None:
        junk = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"
        message = refuse(junk)
        assert message.startswith("shipyard.yaml:3:1: the file contains a NUL byte")
        assert "binary" in message

    def test_invalid_utf8_names_the_byte_and_place(self) -> None:
        message = refuse(b"project: demo\nowner: caf\xe9 au lait\n")
        assert message.startswith("shipyard.yaml:2:11: the file is not UTF-8 text")
        assert "0xe9" in message

    def test_utf16_file(self) -> None:
        message = refuse("project: demo\n".encode("utf-16"))
        assert "UTF-16" in message
        assert "save it as UTF-8" in message

    def test_control_character(self) -> None:
        message = refuse("project: demo\nowner: a\x07b\n")
        assert message.startswith("shipyard.yaml:2:9: the file contains the control character")

    def test_nul_in_text(self) -> None:
        assert refuse("project: demo\x00\n").startswith(
            "shipyard.yaml:1:14: the file contains a NUL"
        )

    def test_list_at_the_top(self) -> None:
        message = refuse("- project: demo\n- other: 1\n")
        assert message.startswith("shipyard.yaml:1:1: the top level must be a mapping")
        assert "not a list" in message

    def test_scalar_at_the_top(self) -> None:
        message = refuse("just some words\n")
        assert message.startswith("shipyard.yaml:1:1: the top level must be a mapping")
        assert "'just some words'" in message

    def test_duplicate_keys_name_both_lines(self) -> None:
        message = refuse("project: demo\nservice:\n  command: a\n  command: b\n")
        assert message.startswith("shipyard.yaml:4:3: service.command: duplicate key 'command'")
        assert "already defined on line 3" in message

    def test_every_duplicate_is_reported(self) -> None:
        with pytest.raises(ConfigInvalid) as caught:
            parse("a: 1\nb: 2\na: 3\nb: 4\n")
        assert [(p.line, p.path) for p in caught.value.problems] == [(3, "a"), (4, "b")]

    def test_billion_laughs_is_refused_quickly(self) -> None:
        message = refuse(BILLION_LAUGHS)
        assert "expand to more than 100,000 values" in message
        assert "alias bomb" in message
        assert message.startswith("shipyard.yaml:")

    def test_alias_that_contains_itself(self) -> None:
        message = refuse("project: demo\nloop: &a [1, *a]\n")
        assert message.startswith("shipyard.yaml:2:7: loop[1]: an alias (*name) refers")

    def test_undefined_alias(self) -> None:
        message = refuse("project: demo\nowner: *nobody\n")
        assert message.startswith("shipyard.yaml:2:8: YAML syntax error: found undefined alias")

    def test_two_documents(self) -> None:
        message = refuse("project: demo\n---\nproject: other\n")
        assert message.startswith("shipyard.yaml:2:1: a second YAML document starts here")

    def test_second_document_after_an_explicit_end(self) -> None:
        message = refuse("project: demo\n...\n# next\n---\nproject: other\n")
        assert message.startswith("shipyard.yaml:4:1: a second YAML document starts here")

    def test_empty_second_document(self) -> None:
        assert refuse("project: demo\n--- \n").startswith("shipyard.yaml:2:1: a second YAML")

    def test_non_string_keys(self) -> None:
        with pytest.raises(ConfigInvalid) as caught:
            parse("project: demo\nports:\n  8080: web\n  true: yes\n")
        problems = caught.value.problems
        assert [(p.line, p.column, p.path) for p in problems] == [(3, 3, "ports"), (4, 3, "ports")]
        assert "the key 8080 is the number 8080; keys must be strings" in problems[0].message
        assert problems[0].hint == 'put the key in quotes: "8080":'

    def test_mapping_as_key(self) -> None:
        assert "a key must be a name" in refuse("? [a, b]\n: c\n")

    def test_python_object_tag(self) -> None:
        message = refuse("project: !!python/object/apply:os.system ['echo pwned']\n")
        assert message.startswith("shipyard.yaml:1:10: project: the YAML tag")
        assert "'!!python/object/apply:os.system' is not supported" in message

    def test_local_tag(self) -> None:
        assert "the YAML tag '!Ref' is not supported" in refuse("project: !Ref name\n")

    def test_set_tag(self) -> None:
        assert "'!!set'" in refuse("tags: !!set {a, b}\n")

    def test_explicit_tag_with_a_wrong_value(self) -> None:
        message = refuse("project: demo\ninstances: !!int many\n")
        assert message.startswith("shipyard.yaml:2:12: instances: 'many' is not a valid !!int")

    def test_merge_of_a_scalar(self) -> None:
        message = refuse("project: demo\nservice:\n  <<: 5\n")
        assert message.startswith("shipyard.yaml:3:7: service: '<<' must be followed by a mapping")

    def test_nesting_too_deep(self) -> None:
        depth = MAX_DEPTH + 5
        text = "".join(f"{'  ' * level}k:\n" for level in range(depth)) + "  " * depth + "v\n"
        assert f"nested more than {MAX_DEPTH} levels deep" in refuse(text)

    def test_flow_nesting_beyond_the_parser_limit(self) -> None:
        message = refuse("a: " + "[" * 5000 + "]" * 5000 + "\n")
        assert message.startswith("shipyard.yaml:")
        assert "nest" in message

    def test_text_with_a_lone_surrogate(self) -> None:
        message = refuse("project: demo\nowner: a\udce9\n")
        assert message.startswith("shipyard.yaml:2:9: the text holds an invalid character")

    def test_text_over_one_mebibyte(self) -> None:
        message = refuse("project: demo\n" + "# padding\n" * 110_000)
        assert "larger than 1 MiB" in message


class TestAccepted:
    """Ordinary YAML reads as plain values, with the location of every key."""

    def test_anchors_aliases_and_merge_keys(self) -> None:
        document = parse(
            "defaults: &defaults\n"
            "  timeout: 10m\n"
            "  retry: 2\n"
            "jobs:\n"
            "  lint: {<<: *defaults, run: ruff}\n"
            "  test:\n"
            "    <<: *defaults\n"
            "    timeout: 15m\n"
            "    env: &env {A: '1'}\n"
            "  build: {env: *env}\n"
        )
        jobs = document.data["jobs"]
        assert jobs["lint"] == {"run": "ruff", "timeout": "10m", "retry": 2}
        assert jobs["test"]["timeout"] == "15m"
        assert jobs["test"]["retry"] == 2
        assert jobs["build"]["env"] == {"A": "1"}
        # A merged key points at the line that wrote it.
        assert document.locations[("jobs", "test", "retry")].key == Position(3, 3)
        assert document.locations[("jobs", "test", "timeout")].key == Position(8, 5)

    def test_scalars_follow_yaml_1_2(self) -> None:
        data = parse(
            "on: [exit, timeout]\n"
            "answers: [yes, no, off, y, True, false]\n"
            "numbers: [10, -3, 0x1f, 0o17, 1.5, 1e3, .inf, 012]\n"
            "empty: [~, null, ]\n"
            "text: [1:30, 2027-01-01, 0.1.0, '3.10', 3.10]\n"
        ).data
        assert data["on"] == ["exit", "timeout"]
        assert data["answers"] == ["yes", "no", "off", "y", True, False]
        assert data["numbers"] == [10, -3, 31, 15, 1.5, 1000.0, float("inf"), 12]
        assert data["empty"] == [None, None]
        assert data["text"] == ["1:30", "2027-01-01", "0.1.0", "3.10", 3.1]

    def test_line_and_column_of_keys_and_values(self) -> None:
        document = parse(
            "# leading comment\n"
            "project: demo\n"
            "environments:\n"
            "  production:\n"
            "    steps:\n"
            "      - {weight: 10, pause: 30s}\n"
            "      - weight: 50\n"
            "        pause: 1m\n"
        )
        where = document.locations
        assert where[("project",)].key == Position(2, 1)
        assert where[("project",)].value == Position(2, 10)
        assert where[("environments", "production")].key == Position(4, 3)
        assert where[("environments", "production", "steps", 0)].value == Position(6, 9)
        assert where[("environments", "production", "steps", 0, "pause")].value == Position(6, 29)
        assert where[("environments", "production", "steps", 1, "pause")].key == Position(8, 9)
        assert where[("environments", "production", "steps", 1, "pause")].value == Position(8, 16)

    def test_locate_falls_back_to_the_nearest_ancestor(self) -> None:
        document = parse("project: demo\nservice:\n  command: run\n")
        assert document.locate(("service", "health", "http")).key == Position(2, 1)

    def test_windows_line_endings_and_byte_order_mark(self) -> None:
        document = parse_yaml(b"\xef\xbb\xbfproject: demo\r\nowner: ada\r\n", "shipyard.yaml")
        assert document.data == {"project": "demo", "owner": "ada"}
        assert document.locations[("owner",)].value == Position(2, 8)

    def test_non_ascii_text(self) -> None:
        document = parse("owner: Zoë\ncity: Zürich\n")
        assert document.data == {"owner": "Zoë", "city": "Zürich"}

    def test_yaml_string_round_trips(self) -> None:
        for text in ("demo", "true", "null", "1.0", "123", "", "a: b", "web.v2", "#x", "~"):
            assert parse(f"k: {yaml_string(text)}\n").data == {"k": text}
