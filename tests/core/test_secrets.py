"""Secrets: loading from the environment and the secrets file, and masking every form of them."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import random
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import UserError
from shipyard.core.secrets import (
    MASK,
    Masker,
    SecretError,
    SecretStore,
    SecretValue,
    load_secrets,
    masker_for,
    read_secrets_file,
)

TOKEN = "pypi-AgEIcHlwaS5vcmcCJDk3ZjE1ZDQ2"
PASSWORD = "s3cr3t/p@ss wörd+'quoted'&more"
PEM = "\n".join(
    [
        "-----BEGIN PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
        "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
        "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ",
        "ab==",
        "-----END PRIVATE KEY-----",
    ]
)


def private_file(path: Path, text: str) -> Path:
    """Write a secrets file readable by its owner only."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- loading


def test_a_secret_comes_from_the_environment_first(tmp_path: Path) -> None:
    secrets = private_file(tmp_path / "secrets", "PYPI_TOKEN=from-the-file-123\n")
    loaded = load_secrets(["PYPI_TOKEN"], environ={"PYPI_TOKEN": TOKEN}, secrets_file=secrets)
    assert loaded["PYPI_TOKEN"].reveal() == TOKEN


def test_a_secret_missing_from_the_environment_comes_from_the_file(tmp_path: Path) -> None:
    secrets = private_file(tmp_path / "secrets", f"PYPI_TOKEN={TOKEN}\n")
    loaded = load_secrets(["PYPI_TOKEN"], environ={"PYPI_TOKEN": ""}, secrets_file=secrets)
    assert loaded["PYPI_TOKEN"].reveal() == TOKEN


def test_the_secrets_file_format(tmp_path: Path) -> None:
    text = "\ufeff" + "\r\n".join(
        [
            "# deploy credentials",
            "",
            f"PYPI_TOKEN = {TOKEN}   ",
            "export DATABASE_URL=postgresql://app:pa#ss@db/app",
            "SINGLE='literal \\n and \"quotes\" # kept'  # a comment",
            'DOUBLE="line one\\nline \\"two\\"\\ttab\\\\"',
            "TLS_KEY<<EOF",
            *PEM.split("\n"),
            "EOF",
            "AFTER=still-read-after-the-block",
            "",
        ]
    )
    values = read_secrets_file(private_file(tmp_path / "secrets", text))
    assert {name: value.reveal() for name, value in values.items()} == {
        "PYPI_TOKEN": TOKEN,
        "DATABASE_URL": "postgresql://app:pa#ss@db/app",
        "SINGLE": 'literal \\n and "quotes" # kept',
        "DOUBLE": 'line one\nline "two"\ttab\\',
        "TLS_KEY": PEM,
        "AFTER": "still-read-after-the-block",
    }


def test_a_double_quoted_value_holds_a_multi_line_key(tmp_path: Path) -> None:
    escaped = PEM.replace("\n", "\\n")
    secrets = private_file(tmp_path / "secrets", f'SIGNING_KEY="{escaped}"\n')
    loaded = load_secrets(["SIGNING_KEY"], environ={}, secrets_file=secrets)
    assert loaded["SIGNING_KEY"].reveal() == PEM


def test_a_missing_secret_says_how_to_provide_it(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    with pytest.raises(SecretError) as caught:
        load_secrets(["PYPI_TOKEN"], environ={}, secrets_file=secrets)
    assert isinstance(caught.value, UserError)
    assert caught.value.message == (
        f"secret PYPI_TOKEN is not set: export PYPI_TOKEN=… or add it to {secrets}"
    )


def test_a_short_value_is_refused_without_showing_it(tmp_path: Path) -> None:
    secrets = private_file(tmp_path / "secrets", "FLAG=xyzzy\n")
    for environ in ({"FLAG": "plugh"}, {}):
        with pytest.raises(SecretError) as caught:
            load_secrets(["FLAG"], environ=environ, secrets_file=secrets)
        message = str(caught.value)
        assert "too short to mask safely" in message
        assert "FLAG" in message
        assert "xyzzy" not in message and "plugh" not in message


def test_a_bad_secret_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="not a valid secret name"):
        load_secrets(["PYPI-TOKEN"], environ={}, secrets_file=tmp_path / "secrets")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_secrets_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(f"PYPI_TOKEN={TOKEN}\n")
    secrets.chmod(mode)
    with pytest.raises(SecretError) as caught:
        load_secrets(["PYPI_TOKEN"], environ={}, secrets_file=secrets)
    assert f"chmod 600 {secrets}" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_secrets_all_in_the_environment_do_not_read_the_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("this is not a secrets file at all\n")
    secrets.chmod(0o644)
    store = SecretStore(environ={"PYPI_TOKEN": TOKEN}, secrets_file=secrets)
    assert store.load(["PYPI_TOKEN"])["PYPI_TOKEN"].reveal() == TOKEN


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (f"OK=fine-value\nTOKEN='{TOKEN}\n", 2, "single quote is never closed"),
        (f'OK=fine-value\n\nTOKEN="{TOKEN}\n', 3, "double quote is never closed"),
        (f'TOKEN="{TOKEN}\\q"\n', 1, "unknown escape sequence"),
        (f"TOKEN='{TOKEN}' trailing\n", 1, "unexpected text after the closing quote"),
        (f"{TOKEN}\n", 1, "expected NAME=value"),
        (f"9{TOKEN}={TOKEN}\n", 1, "not a valid secret name"),
        (f"A=1\nTOKEN<<EOF\n{TOKEN}\nEND\n", 2, "has no closing line 'EOF'"),
        (f"TOKEN<<E O F\n{TOKEN}\nE O F\n", 1, "expected TOKEN<<DELIMITER"),
        (f"TOKEN={TOKEN}\n# again\nTOKEN={TOKEN}\n", 3, "defined again (first on line 1)"),
    ],
)
def test_a_malformed_secrets_file_names_file_and_line_not_the_value(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    secrets = private_file(tmp_path / "secrets", text)
    with pytest.raises(SecretError) as caught:
        read_secrets_file(secrets)
    message = str(caught.value)
    assert message.startswith(f"{secrets}, line {line}: ")
    assert problem in message
    assert TOKEN not in message


def test_a_secrets_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_bytes(b"A=fine-value\nB=\xff\xfe-not-text\n")
    secrets.chmod(0o600)
    with pytest.raises(SecretError, match=r"line 2: the secrets file is not UTF-8"):
        read_secrets_file(secrets)


def test_a_secret_value_never_shows_itself() -> None:
    value = SecretValue(TOKEN)
    assert repr(value) == "SecretValue('***')"
    assert str(value) == "SecretValue('***')"
    assert TOKEN not in f"{value} {value!r} {[value]} { ({'k': value}) }"
    assert value.reveal() == TOKEN
    assert value == SecretValue(TOKEN)
    assert copy.deepcopy(value).reveal() == TOKEN
    with pytest.raises(TypeError):
        pickle.dumps(value)


# ---------------------------------------------------------------- masking


def test_every_occurrence_of_the_exact_value_is_masked() -> None:
    masker = Masker([TOKEN, SecretValue(PASSWORD)])
    text = f"token={TOKEN} again:{TOKEN}{TOKEN} password {PASSWORD}!"
    assert masker.mask(text) == "token=*** again:****** password ***!"


def test_each_long_line_of_a_multi_line_secret_is_masked_alone() -> None:
    masker = Masker([PEM])
    lines = PEM.split("\n")
    assert masker.mask(f"key:\n{PEM}\nend") == "key:\n***\nend"
    assert masker.mask(f"> {lines[2]} <") == "> *** <"
    assert masker.mask(f"[{lines[0]}]") == "[***]"
    # Short lines of a multi-line value are not secrets on their own.
    assert masker.mask("ab== is fine") == "ab== is fine"


@pytest.mark.parametrize("value", [TOKEN, PASSWORD, PEM, "aé€😀-unicode"])
def test_encoded_forms_are_masked(value: str) -> None:
    masker = Masker([value])
    raw = value.encode()
    encodings = {
        "base64": base64.b64encode(raw).decode(),
        "base64 without padding": base64.b64encode(raw).decode().rstrip("="),
        "url-safe base64": base64.urlsafe_b64encode(raw).decode(),
        "url-safe base64 without padding": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "quote": quote(value),
        "quote safe=''": quote(value, safe=""),
        "quote lowercase hex": re.sub(
            "%[0-9A-F]{2}", lambda m: m[0].lower(), quote(value, safe="")
        ),
        "quote_plus": quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "json unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "python repr": repr(value)[1:-1],
        "shell": shlex.quote(value),
    }
    for name, encoded in encodings.items():
        masked = masker.mask(f"<{encoded}>")
        assert masked == "<***>" or masked == "<'***'>", name


@pytest.mark.parametrize("value", [TOKEN, PASSWORD, PEM])
def test_a_secret_inside_a_longer_base64_blob_is_masked_at_every_alignment(value: str) -> None:
    masker = Masker([value])
    rng = random.Random(7)
    for prefix_length in range(9):
        prefix = rng.randbytes(prefix_length)
        suffix = rng.randbytes(rng.randrange(0, 9))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(prefix + value.encode() + suffix).decode()
            masked = masker.mask(blob)
            assert MASK in masked
            # What is left are the few characters that mix the secret's bits with others.
            assert len(masked) <= len(MASK) + 4 * (prefix_length + len(suffix) + 4) // 3 + 4


def test_wrapped_base64_from_real_tools_is_masked(tmp_path: Path) -> None:
    source = tmp_path / "key.pem"
    source.write_text(PEM + "\n")
    masker = Masker([PEM])
    for command in (["base64", str(source)], ["openssl", "base64", "-in", str(source)]):
        try:
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        except FileNotFoundError:
            continue
        lines = masker.mask(output).splitlines()
        # Every line is masked; the last keeps at most the characters that encode the newline.
        assert all(line.startswith(MASK) for line in lines), command
        assert all(len(line) <= len(MASK) + 4 for line in lines), command


def test_overlapping_occurrences_become_one_mask() -> None:
    masker = Masker(["abcdefgh", "efghijkl", "zzzzzz"])
    assert masker.mask("<abcdefghijkl>") == "<***>"
    assert masker.mask("<zzzzzzzzz>") == "<***>"
    assert masker.mask("<zzzzzz zzzzzz>") == "<*** ***>"


def test_a_masker_refuses_a_value_too_short_to_mask() -> None:
    with pytest.raises(SecretError, match="too short to mask safely"):
        Masker([TOKEN, "12345"])


def test_a_masker_with_no_secrets_changes_nothing() -> None:
    masker = Masker([])
    assert masker.mask("anything at all") == "anything at all"
    stream = masker.stream()
    assert stream.feed("partial") == "partial"
    assert stream.flush() == ""


def test_a_masker_does_not_show_its_secrets() -> None:
    masker = Masker([TOKEN])
    assert TOKEN not in repr(masker)


# ---------------------------------------------------------------- streams

STREAM_SECRETS = [TOKEN, PASSWORD, PEM, "aaaaaa", "abcabcab"]
STREAM_TEXTS = [
    f"start {TOKEN} middle {TOKEN[:10]} {TOKEN}{TOKEN} end",
    f"{PASSWORD} and json {json.dumps(PASSWORD)} and url {quote(PASSWORD)}",
    f"key\n{PEM}\n{base64.b64encode(PEM.encode()).decode()}\n",
    "aaaaa aaaaaaa aaaaaaaaaaaaa abcabcabcabcab abcabca aaaaab",
    f"{TOKEN[:-1]} {TOKEN[1:]} {PASSWORD[:6]}{TOKEN}",
]


def run_stream(masker: Masker, pieces: list[str]) -> str:
    """Feed pieces to a fresh stream masker; check the hold-back bound; return all output."""
    stream = masker.stream()
    output: list[str] = []
    for piece in pieces:
        output.append(stream.feed(piece))
        assert stream.held < masker.longest
    output.append(stream.flush())
    return "".join(output)


@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_a_stream_split_anywhere_is_masked_like_the_whole(text: str) -> None:
    masker = Masker(STREAM_SECRETS)
    expected = masker.mask(text)
    assert TOKEN not in expected and PASSWORD not in expected and PEM not in expected
    for cut in range(len(text) + 1):
        assert run_stream(masker, [text[:cut], text[cut:]]) == expected, cut


@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_a_stream_in_random_pieces_is_masked_like_the_whole(text: str) -> None:
    masker = Masker(STREAM_SECRETS)
    expected = masker.mask(text)
    rng = random.Random(text)
    for _ in range(300):
        cuts = sorted(rng.sample(range(len(text) + 1), rng.randrange(1, min(12, len(text)))))
        pieces = [
            text[start:stop] for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True)
        ]
        assert run_stream(masker, pieces) == expected, cuts
    assert run_stream(masker, list(text)) == expected


def test_a_stream_of_random_text_with_secrets_matches_the_whole() -> None:
    secrets = ["s3cr3t-value", "value-and-more", "ababab"]
    masker = Masker(secrets)
    rng = random.Random(11)
    alphabet = "abs3crtvlu-emond "
    for _ in range(200):
        parts = [
            rng.choice(secrets)[: rng.randrange(1, 16)]
            if rng.random() < 0.5
            else rng.choice(alphabet)
            for _ in range(40)
        ]
        text = "".join(parts)
        pieces, position = [], 0
        while position < len(text):
            step = rng.randrange(1, 9)
            pieces.append(text[position : position + step])
            position += step
        assert run_stream(masker, pieces) == masker.mask(text)


def test_a_stream_emits_at_once_what_cannot_start_a_secret() -> None:
    stream = Masker([TOKEN]).stream()
    assert stream.feed("building wheel...\n") == "building wheel...\n"
    assert stream.feed("upload with py") == "upload with "
    assert stream.held == len("py")
    assert stream.feed(TOKEN[2:] + " done") == "*** done"
    assert stream.feed("pypi-") == ""
    assert stream.flush() == "pypi-"


# ---------------------------------------------------------------- wrapped, percent, hex


def wrap(text: str, width: int, newline: str = "\n") -> str:
    """``text`` broken into lines of ``width`` characters, as ``base64 -w`` and ``xxd -p`` do."""
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


def left_over(masked: str) -> int:
    """How many characters of an encoded blob masking left, line breaks and masks aside."""
    return len(re.sub(r"\s", "", masked.replace(MASK, "")))


@pytest.mark.parametrize("value", [TOKEN, PASSWORD, PEM, "aé€😀-unicode"])
@pytest.mark.parametrize("width", [76, 64, 60, 17, 5])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_wrapped_base64_of_a_secret_at_any_offset_is_masked(
    value: str, width: int, newline: str
) -> None:
    masker = Masker([value])
    rng = random.Random(f"{value}{width}")
    for prefix_length in range(7):
        prefix = rng.randbytes(prefix_length)
        suffix = rng.randbytes(rng.randrange(0, 90))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(prefix + value.encode() + suffix).decode()
            masked = masker.mask(wrap(blob, width, newline))
            assert MASK in masked, (prefix_length, width)
            # Left are the characters of the other bytes and the few that mix in their bits.
            others = 4 * (prefix_length + len(suffix)) // 3 + 6
            assert left_over(masked) <= others, (prefix_length, width, masked)


def test_wrapped_base64_from_real_tools_is_masked_with_the_secret_at_an_offset(
    tmp_path: Path,
) -> None:
    masker = Masker([TOKEN])
    for prefix in ("x", "xy", "xyz", "wxyz"):
        source = tmp_path / "blob.txt"
        source.write_text(f"{prefix}{TOKEN} and then a long enough tail of other text " * 2)
        for command in (["base64", str(source)], ["openssl", "base64", "-in", str(source)]):
            try:
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            except FileNotFoundError:
                continue
            masked = masker.mask(output)
            assert masked.count(MASK) == 2, (command, prefix, masked)
            tail = base64.b64encode(source.read_bytes()).decode()
            assert left_over(masked) <= len(tail) - 2 * (4 * len(TOKEN) // 3 - 2), command


@pytest.mark.parametrize("value", [TOKEN, PASSWORD, "aé€😀-unicode"])
def test_a_fully_percent_encoded_secret_is_masked(value: str) -> None:
    masker = Masker([value])
    raw = value.encode()
    upper = "".join(f"%{byte:02X}" for byte in raw)
    lower = "".join(f"%{byte:02x}" for byte in raw)
    for form in (upper, lower):
        assert masker.mask(f"url=https://x.test/?q={form}&next=1") == (
            "url=https://x.test/?q=***&next=1"
        )


@pytest.mark.parametrize("value", [TOKEN, PASSWORD, PEM, "aé€😀-unicode"])
def test_a_hex_encoded_secret_is_masked_plain_and_wrapped(value: str) -> None:
    masker = Masker([value])
    for form in (value.encode().hex(), value.encode().hex().upper()):
        assert masker.mask(f"<{form}>") == "<***>"
        assert masker.mask(f"0a0b{form}ff") == "0a0b***ff"
    # As `xxd -p` writes it: 60 hex digits a line.
    dumped = wrap(("ab" + value.encode().hex() + "cd" * 40), 60)
    assert left_over(masker.mask(dumped)) <= 2 + 80


def test_hex_from_xxd_is_masked(tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(b"\x00\x01" + PASSWORD.encode() + b"\xff" * 50)
    try:
        output = subprocess.run(
            ["xxd", "-p", str(source)], check=True, capture_output=True, text=True
        ).stdout
    except FileNotFoundError:
        pytest.skip("xxd is not installed")
    masked = Masker([PASSWORD]).mask(output)
    assert PASSWORD.encode().hex() not in masked.replace("\n", "")
    assert left_over(masked) == 2 * (2 + 50)


WRAPPED_TEXTS = [
    wrap(base64.b64encode(b"a" + TOKEN.encode() + b"z" * 70).decode(), 76),
    wrap(base64.b64encode(b"ab" + PEM.encode() + b"z" * 10).decode(), 64, "\r\n") + "\r\n",
    "".join(f"%{b:02x}" for b in PASSWORD.encode()) + " and " + PASSWORD.encode().hex().upper(),
    wrap("00" + TOKEN.encode().hex() + "ff" * 30, 60) + "\n",
]


@pytest.mark.parametrize("text", WRAPPED_TEXTS)
def test_a_stream_of_wrapped_and_encoded_secrets_is_masked_like_the_whole(text: str) -> None:
    masker = Masker(STREAM_SECRETS)
    expected = masker.mask(text)
    assert left_over(expected) < left_over(text) - 20
    for cut in range(len(text) + 1):
        assert run_stream(masker, [text[:cut], text[cut:]]) == expected, cut
    rng = random.Random(text)
    for _ in range(100):
        cuts = sorted(rng.sample(range(len(text) + 1), rng.randrange(1, 12)))
        pieces = [
            text[start:stop] for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True)
        ]
        assert run_stream(masker, pieces) == expected, cuts
    assert run_stream(masker, list(text)) == expected


@settings(max_examples=150, deadline=None)
@given(
    value=st.text(min_size=6, max_size=40).filter(lambda v: len(v) >= 6),
    prefix=st.binary(max_size=8),
    suffix=st.binary(max_size=40),
    width=st.integers(min_value=4, max_value=100),
    url_safe=st.booleans(),
)
def test_no_wrapped_base64_blob_keeps_a_secret(
    value: str, prefix: bytes, suffix: bytes, width: int, url_safe: bool
) -> None:
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    blob = encode(prefix + value.encode() + suffix).decode()
    masked = Masker([value]).mask(wrap(blob, width))
    assert left_over(masked) <= 4 * (len(prefix) + len(suffix)) // 3 + 6


@settings(max_examples=100, deadline=None)
@given(
    value=st.text(min_size=6, max_size=30).filter(lambda v: len(v) >= 6),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    form=st.sampled_from(["plain", "base64", "wrapped", "percent", "PERCENT", "hex", "HEX"]),
)
def test_a_stream_cut_anywhere_masks_like_the_whole(
    value: str, before: str, after: str, cuts: list[int], form: str
) -> None:
    raw = value.encode()
    encoded = {
        "plain": value,
        "base64": base64.b64encode(b"-" + raw).decode(),
        "wrapped": wrap(base64.b64encode(b"--" + raw + b"-" * 20).decode(), 7),
        "percent": "".join(f"%{b:02x}" for b in raw),
        "PERCENT": "".join(f"%{b:02X}" for b in raw),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }[form]
    text = f"{before}{encoded}{after}"
    masker = Masker([value])
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert run_stream(masker, pieces) == masker.mask(text)


# ---------------------------------------------------------------- a deployment's masker


def test_masker_for_hides_the_named_secrets_and_all_of_the_secrets_file(tmp_path: Path) -> None:
    secrets = private_file(
        tmp_path / "secrets", f"PYPI_TOKEN={TOKEN}\nSHORT=abc\nOTHER=other-value\n"
    )
    masker = masker_for(
        ["DB_PASSWORD", "NOT_SET"], environ={"DB_PASSWORD": PASSWORD}, secrets_file=secrets
    )
    text = f"{PASSWORD} {TOKEN} {base64.b64encode(b'other-value').decode()} abc"
    assert masker.mask(text) == "*** *** *** abc"


def test_masker_for_never_raises_on_an_unusable_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(f"PYPI_TOKEN={TOKEN}\n")
    secrets.chmod(0o644)  # refused for use: nothing from it was handed to anybody
    masker = masker_for(["DB_PASSWORD"], environ={"DB_PASSWORD": PASSWORD}, secrets_file=secrets)
    assert masker.mask(f"{PASSWORD}!") == "***!"
    missing = masker_for(["DB_PASSWORD"], environ={}, secrets_file=tmp_path / "none")
    assert missing.mask("nothing to hide") == "nothing to hide"
