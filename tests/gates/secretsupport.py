"""Secrets for tests, made when the tests run so that no real-looking secret is committed.

Each planted secret is built from a seeded random generator and split prefixes, so scanners
of this repository find nothing in the test sources while the tests see realistic values.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

_ALNUM = string.ascii_letters + string.digits
_RANDOM = random.Random()


def _chars(alphabet: str, length: int) -> str:
    return "".join(_RANDOM.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Planted:
    """A secret planted in a file: the file, the line it is on, the rule expected to find it."""

    file: str
    text: str
    secret: str
    rule: str


def planted() -> list[Planted]:
    """At least ten forms of secret, each in the kind of file it is usually leaked in."""
    _RANDOM.seed(20260601)  # the same secrets on every call
    aws_id = "AK" + "IA" + _chars(string.ascii_uppercase + "234567", 16)
    aws_secret = _chars(_ALNUM + "/+", 40)
    github = "gh" + "p_" + _chars(_ALNUM, 36)
    slack = "xo" + "xb-" + _chars(string.digits, 11) + "-" + _chars(string.digits, 12) + "-"
    slack += _chars(string.ascii_lowercase + string.digits, 24)
    stripe = "sk" + "_live_" + _chars(_ALNUM, 24)
    db_password = _chars(_ALNUM, 18)
    keyword_password = _chars(_ALNUM, 12) + "!#"
    hex_token = _chars("0123456789abcdef", 40)
    base64_key = _chars(_ALNUM + "+/", 44) + "=="
    npm_token = "np" + "m_" + _chars(_ALNUM, 36)
    body = "\n".join(_chars(_ALNUM + "+/", 64) for _ in range(6))
    header = "-----BEGIN " + "RSA PRIVATE KEY-----"
    pem = f"{header}\n{body}\n-----END " + "RSA PRIVATE KEY-----"
    acme = "acme_" + _chars(string.ascii_lowercase + string.digits, 32)
    return [
        Planted("app/settings.py", f'AWS_ACCESS_KEY_ID = "{aws_id}"', aws_id, "AWS Access Key"),
        Planted(
            "app/settings.py",
            f'aws_secret_access_key = "{aws_secret}"',
            aws_secret,
            "AWS Access Key",
        ),
        Planted("deploy/ci.sh", f"export GITHUB_TOKEN={github}", github, "GitHub Token"),
        Planted("app/notify.py", f'SLACK = "{slack}"', slack, "Slack Token"),
        Planted("app/billing.js", f"const key = '{stripe}';", stripe, "Stripe Access Key"),
        Planted(
            "config/database.yaml",
            f"url: postgres://admin:{db_password}@db.internal:5432/app",
            db_password,
            "Basic Auth Credentials",
        ),
        Planted(
            "app/login.py", f'password = "{keyword_password}"', keyword_password, "Secret Keyword"
        ),
        Planted(
            "config/service.yaml", f"api_token: {hex_token}", hex_token, "Hex High Entropy String"
        ),
        Planted(
            "config/app.ini",
            f"[signing]\nsigning_key = {base64_key}",
            base64_key,
            "Base64 High Entropy String",
        ),
        Planted(".npmrc", f"//registry.npmjs.org/:_authToken={npm_token}", npm_token, "NPM tokens"),
        Planted("keys/deploy.pem", pem, pem, "Private Key"),
        Planted("app/acme.py", f'ACME = "{acme}"', acme[5:], "acme-api-key"),
    ]


ACME_RULE = (
    "      - id: acme-api-key\n"
    "        regex: 'acme_(?P<secret>[a-z0-9]{32})'\n"
    "        keywords: [acme_]\n"
    "        entropy: 3.0\n"
)
"""A project rule (YAML under ``gates.secrets.rules``) that finds the planted ``acme_`` key."""


def look_alikes() -> dict[str, str]:
    """Files that hold things shaped like secrets that are not: each must not be reported."""
    _RANDOM.seed(20260602)
    sha256 = _chars("0123456789abcdef", 64)
    other = _chars("0123456789abcdef", 64)
    integrity = _chars(_ALNUM + "+/", 86) + "=="
    uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    fixture_key = "AK" + "IA" + _chars(string.ascii_uppercase + "234567", 16)
    fixture_token = "gh" + "p_" + _chars(_ALNUM, 36)
    return {
        "requirements.txt": f"requests==2.32.3 \\\n    --hash=sha256:{sha256}\n",
        "uv.lock": (
            'version = 1\n\n[[package]]\nname = "requests"\nversion = "2.32.3"\n'
            'source = { registry = "https://pypi.org/simple" }\n'
            f'sdist = {{ url = "https://x/requests.tar.gz", hash = "sha256:{other}" }}\n'
        ),
        "web/package-lock.json": (
            '{"lockfileVersion": 3, "packages": {"node_modules/left-pad": '
            f'{{"version": "1.3.0", "integrity": "sha512-{integrity}"}}}}}}\n'
        ),
        "pylock.toml": (
            'lock-version = "1.0"\n\n[[packages]]\nname = "attrs"\nversion = "24.2.0"\n'
            f'wheels = [{{ name = "attrs.whl", hashes = {{ sha256 = "{sha256}" }} }}]\n'
        ),
        "SHA256SUMS.txt": f'checksum: "{other}"\n',
        "config/ids.yaml": f'tenant_id: "{uuid}"\nrequest: "{uuid.upper()}"\n',
        "tests/fixtures/aws.py": f'KEY = "{fixture_key}"  # shipyard: allow-secret\n',
        "tests/fixtures/github.py": (
            f'# shipyard: allow-secret-next-line\nTOKEN = "{fixture_token}"\n'
        ),
        "app/env.py": 'password = os.environ["DB_PASSWORD"]\napi_key = get_secret("API")\n',
        "config/template.yaml": 'password: "${DB_PASSWORD}"\ntoken: "{{ vault_token }}"\n',
        "app/placeholder.py": 'ACME = "acme_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"\n',
    }
