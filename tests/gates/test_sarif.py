"""SARIF output validates against a JSON Schema of SARIF 2.1.0's rules for what we emit.

No PyPI package ships the official SARIF 2.1.0 schema (sarif-om, sarif-tools, sarif-pydantic,
pysarif and others were checked), and vendoring it is not allowed, so this schema is written
here from the SARIF 2.1.0 specification for the objects and properties Shipyard writes. It is
strict where the specification is: required properties, enumerations, integer ranges.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from shipyard.gates import Finding, GateResult, Severity, Status, to_sarif

_MESSAGE = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}},
}
_PROPERTY_BAG = {"type": "object"}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
_LOCATION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "physicalLocation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "artifactLocation": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"uri": {"type": "string", "format": "uri-reference"}},
                },
                "region": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"startLine": {"type": "integer", "minimum": 1}},
                },
            },
        },
        "message": _MESSAGE,
    },
}
_RULE = {
    "type": "object",
    "required": ["id"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "shortDescription": _MESSAGE,
        "help": _MESSAGE,
        "helpUri": {"type": "string", "format": "uri"},
        "defaultConfiguration": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"level": _LEVEL},
        },
        "properties": _PROPERTY_BAG,
    },
}
_RESULT = {
    "type": "object",
    "required": ["message"],
    "additionalProperties": False,
    "properties": {
        "ruleId": {"type": "string"},
        "ruleIndex": {"type": "integer", "minimum": -1},
        "level": _LEVEL,
        "message": _MESSAGE,
        "locations": {"type": "array", "items": _LOCATION, "uniqueItems": False},
        "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
        "suppressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"enum": ["inSource", "external"]},
                    "justification": {"type": "string"},
                },
            },
        },
        "properties": _PROPERTY_BAG,
    },
}
SARIF_2_1_0_SUBSET: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["version", "runs"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tool"],
                "additionalProperties": False,
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "additionalProperties": False,
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "rules": {"type": "array", "items": _RULE},
                                },
                            }
                        },
                    },
                    "invocations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["executionSuccessful"],
                            "additionalProperties": False,
                            "properties": {
                                "executionSuccessful": {"type": "boolean"},
                                "properties": _PROPERTY_BAG,
                            },
                        },
                    },
                    "results": {"type": "array", "items": _RESULT},
                },
            },
        },
    },
}


def findings() -> list[GateResult]:
    vulnerable = Finding(
        id="GHSA-x84v-xcm2-53pg",
        severity=Severity.MEDIUM,
        location="requirements.txt:3",
        message="requests 2.19.0: leaks headers",
        remediation="upgrade requests to 2.20.0",
        blocking=True,
        details={
            "package": "requests",
            "version": "2.19.0",
            "score": 6.1,
            "aliases": ["CVE-2018-18074"],
            "references": ["https://example.com/advisory"],
        },
    )
    ignored = Finding(
        id="PYSEC-1",
        severity=Severity.HIGH,
        location="uv.lock",
        message="jinja2 2.10: sandbox escape",
        suppression="ignored until 2027-01-01: not reachable",
    )
    stale = Finding(
        id="SHIPYARD-STALE-ADVISORIES",
        severity=Severity.INFO,
        location="the local advisory index",
        message="the data is 9 days old",
    )
    return [GateResult("vulnerabilities", Status.FAIL, (vulnerable, ignored, stale), "x", 0.1)]


def test_sarif_output_validates_against_the_sarif_2_1_0_rules() -> None:
    log = to_sarif(findings())
    jsonschema.Draft7Validator.check_schema(SARIF_2_1_0_SUBSET)
    validator = jsonschema.Draft7Validator(
        SARIF_2_1_0_SUBSET, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_sarif_results_say_where_how_bad_and_what_was_suppressed() -> None:
    [run] = to_sarif(findings())["runs"]
    blocking, ignored, stale = run["results"]
    assert blocking["level"] == "error"
    assert blocking["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "requirements.txt"},
        "region": {"startLine": 3},
    }
    rule = run["tool"]["driver"]["rules"][blocking["ruleIndex"]]
    assert rule["id"] == "GHSA-x84v-xcm2-53pg"
    assert rule["properties"]["security-severity"] == "6.1"
    assert ignored["suppressions"] == [
        {"kind": "external", "justification": "ignored until 2027-01-01: not reachable"}
    ]
    assert stale["level"] == "note"
    assert stale["locations"][0]["message"]["text"] == "the local advisory index"


def test_the_schema_rejects_what_sarif_forbids() -> None:
    log = to_sarif(findings())
    log["runs"][0]["results"][0]["level"] = "fatal"
    assert not jsonschema.Draft7Validator(SARIF_2_1_0_SUBSET).is_valid(log)
