"""``twcmaster decode`` as a user runs it: a real subprocess, JSON lines out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.protocol.test_codec import VECTORS, frame_only


def decode(*args: str, stdin: str | None = None) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "twcmaster", "decode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_vector_decodes_from_stdin_one_object_per_frame():
    lines = "\n".join(VECTORS[name] for name in sorted(VECTORS))
    out = decode("-", stdin=lines)
    assert len(out) == len(VECTORS)
    for item in out:
        assert item["checksum_ok"] is True
        assert len(item["code"]) == 4 and item["code"] == item["code"].upper()
        assert {"name", "sender", "receiver"} <= item.keys()


def test_heartbeat_fields_in_amps():
    (item,) = decode(VECTORS["T11"])
    assert item["code"] == "FDE0"
    assert item["sender"] == "032E" and item["receiver"] == "7777"
    assert item["allowed_amps"] == 48.0 and item["actual_amps"] == 0.25
    assert item["state"] == 4 and item["protocol"] == 1


def test_bytes_as_separate_arguments_and_unframed_escaped_or_not():
    t10 = frame_only(bytes.fromhex(VECTORS["T10"]))
    (framed,) = decode(*t10.hex(" ").split())
    assert framed["amps"] == 48.0
    escaped_body = t10[1:-1].hex()
    (unframed_escaped,) = decode(escaped_body)
    assert unframed_escaped == framed
    raw_body = "FBE07777032E0512C000000000D6"
    (unframed_raw,) = decode(raw_body)
    assert unframed_raw == framed


def test_energy_report_and_vin_part():
    (energy,) = decode(VECTORS["T21"])
    assert energy["kwh"] == 56 and energy["voltage_phase_b"] == 241
    (vin,) = decode(VECTORS["T29"])
    assert vin["vin_part"] == "5YJ3E1E" and vin["receiver"] is None


def test_several_frames_in_one_capture_with_trailers():
    out = decode(VECTORS["T2"] + " " + VECTORS["T23"] + " " + VECTORS["T7"])
    assert [o["code"] for o in out] == ["FCE1", "FDEB", "FBE0"]


@pytest.mark.parametrize(
    "bad",
    ["zz", "C0 FB", "C0 FB E0 77 77 03 2E 05 0F A0 00 00 00 00 B4 C0", "abc", "C0C0"],
)
def test_bad_input_gives_error_objects_not_tracebacks(bad):
    out = decode(bad)
    assert out
    if "B4 C0" in bad:  # wrong checksum: decoded, but flagged
        assert out[0]["checksum_ok"] is False
    else:
        assert "error" in out[0]


def test_non_ascii_vin_part_is_decoded_not_a_traceback():
    """Issue 7, finding 1: ``decode fdee1234 80 00…00 b4`` printed a traceback."""
    (out,) = decode("fdee1234" + "80" + "00" * 14 + "b4")
    assert out["code"] == "FDEE" and out["checksum_ok"] is True
    assert out["name"] == "unexpected padding or layout"


def test_a_huge_input_is_not_echoed_whole_into_the_error():
    """Issue 7, finding 10: a 20 MB argument came back whole in the error object."""
    huge = "zz" * 10_000_000
    result = subprocess.run(
        [sys.executable, "-m", "twcmaster", "decode", "-"],
        input=huge,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr
    (out,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert "error" in out and len(result.stdout) < 1000
    assert "20000000 characters" in out["input"]


def test_a_huge_unframed_body_is_an_error_not_a_huge_description():
    (out,) = decode("-", stdin="00" * 100_000)
    assert out["error"] == "longer than any frame (100000 bytes)"
    assert len(out["input"]) < 200
