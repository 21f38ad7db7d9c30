"""``simfed resolve`` from the outside: output contract and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builders import worked_example
from simfed.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"
EXAMPLE = DATA / "worked_example.jsonl"


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["resolve", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_resolves_the_worked_example_at_the_extremities(capsys):
    b = worked_example()
    code, out, _ = run(capsys, str(EXAMPLE))
    assert code == 0
    assert set(out) == {"state", "rejected", "forward_extremities"}
    assert out["state"]["m.room.power_levels"][""] == b.id("PL2")
    assert out["state"]["m.room.member"]["@carol:c"] == b.id("C_JOIN")
    assert out["state"]["m.room.name"][""] == b.id("N1")
    assert "m.room.topic" not in out["state"]
    assert out["rejected"] == {}
    assert sorted(out["forward_extremities"]) == sorted([b.id("N1"), b.id("KICK")])


@pytest.mark.parametrize("algorithm,carol,topic", [("v1", "C_JOIN", True), ("naive", "KICK", True)])
def test_other_algorithms_on_the_same_events(capsys, algorithm, carol, topic):
    b = worked_example()
    code, out, _ = run(capsys, str(EXAMPLE), "--algorithm", algorithm)
    assert code == 0
    assert out["state"]["m.room.member"]["@carol:c"] == b.id(carol)
    assert ("m.room.topic" in out["state"]) == topic


def test_at_and_json_array_with_event_ids(capsys, tmp_path):
    b = worked_example()
    f = tmp_path / "room.json"
    f.write_text(json.dumps([e.pdu_with_id() for e in b.by_name.values()]))
    code, out, _ = run(capsys, str(f), "--at", b.id("T1"))
    assert code == 0
    assert out["state"]["m.room.topic"][""] == b.id("T1")
    assert out["state"]["m.room.power_levels"][""] == b.id("PL1")


def test_rejections_are_reported(capsys, tmp_path):
    b = worked_example()
    bad = b.add("BAD_PL", "m.room.power_levels", "@carol:c", {"users": {"@carol:c": 100}}, state_key="",
                prev=["C_JOIN"], auth=["CREATE", "PL1", "C_JOIN"])
    f = tmp_path / "room.jsonl"
    f.write_text("\n".join(json.dumps(e.pdu()) for e in b.by_name.values()))
    code, out, _ = run(capsys, str(f))
    assert code == 0
    assert list(out["rejected"]) == [bad.event_id]
    assert "auth_events:7" in out["rejected"][bad.event_id]


def _write(tmp_path: Path, text: str) -> str:
    f = tmp_path / "in.json"
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize("make,needle", [
    (lambda b: "{not json", "invalid JSON"),
    (lambda b: json.dumps([{"type": "m.room.message"}]), "missing required field"),
    (lambda b: json.dumps([e.pdu() for n, e in b.by_name.items() if n != "PL1"]), "not in the input"),
    (lambda b: json.dumps([dict(b["A_JOIN"].pdu(), event_id="$wrong")]), "does not match"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, make, needle):
    code, _, err = run(capsys, _write(tmp_path, make(worked_example())))
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_at_and_bad_signature_with_keys(capsys, tmp_path):
    code, _, err = run(capsys, str(EXAMPLE), "--at", "$nope")
    assert code == 2 and "--at $nope" in err
    keys = tmp_path / "keys.json"
    from simfed.protocol import derive_server_key
    keys.write_text(json.dumps({s: {"ed25519:1": derive_server_key(99, s).public_key_base64} for s in "abc"}))
    code, _, err = run(capsys, str(EXAMPLE), "--keys", str(keys))
    assert code == 2 and "does not verify" in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({s: {"ed25519:1": derive_server_key(0, s).public_key_base64} for s in "abc"}))
    code, out, _ = run(capsys, str(EXAMPLE), "--keys", str(good))
    assert code == 0


def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "simfed", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("simfed ")
    out = subprocess.run([sys.executable, "-m", "simfed"], capture_output=True, text=True)
    assert out.returncode == 0 and "resolve" in out.stdout


# -- hostile input (issue 13): exit 2 with one line, never a traceback ----------------------


def _topic_line(**change) -> dict:
    pdu = json.loads(EXAMPLE.read_text().splitlines()[1])
    pdu.update(change)
    return pdu


def _deep(levels: int) -> list:
    v: list = []
    for _ in range(levels):
        v = [v]
    return v


HOSTILE_EVENTS = {
    "non_utf8": (b"\xff\xfe[{}]", "not UTF-8"),
    "empty_array": (b" [ ] ", "no events"),
    "empty_file": (b"\n", "no events"),
    "deep_json": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "big_integer": (b'[{"depth": ' + b"9" * 5000 + b"}]", "4300 digits"),
    "surrogate_value": (json.dumps(_topic_line(content={"topic": "\ud800"})).encode(), "surrogate"),
    "surrogate_type": (json.dumps(_topic_line(type="m.\udfff")).encode(), "surrogate"),
    "deep_content": (json.dumps(_topic_line(content={"x": _deep(700)})).encode(), "deeper than"),
    "not_objects": (b"[1, 2]", "JSON object"),
    "wrong_types": (json.dumps(_topic_line(hashes=-1, signatures=[1])).encode(), "hashes"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_EVENTS))
def test_hostile_event_files_exit_2_with_one_line(capsys, tmp_path, name):
    data, needle = HOSTILE_EVENTS[name]
    f = tmp_path / "in.json"
    f.write_bytes(data)
    code, _, err = run(capsys, str(f))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("simfed resolve: "), err
    assert needle in err


HOSTILE_KEYS = {
    "list": ("[1, 2]", "got a JSON list"),
    "number_for_key": ('{"a": 5}', "expected base64 text"),
    "number_for_keys": ('{"a": {"verify_keys": 5}}', "expected an object"),
    "object_without_key": ('{"a": {"ed25519:1": {"nokey": 1}}}', "expected base64 text"),
    "short_key": ('{"a": "abc"}', "32 bytes"),
    "deep": ("[" * 5000, "nested too deeply"),
    "not_json": ("{", "invalid JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_KEYS))
def test_keys_file_of_the_wrong_shape_exits_2_with_one_line(capsys, tmp_path, name):
    text, needle = HOSTILE_KEYS[name]
    k = tmp_path / "keys.json"
    k.write_text(text)
    code, _, err = run(capsys, str(EXAMPLE), "--keys", str(k))
    assert code == 2
    assert err.count("\n") == 1 and needle in err, err
