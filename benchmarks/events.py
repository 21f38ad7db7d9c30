"""Cost of building and checking events against raw ed25519 sign/verify.

Issue goal: building an event (``Event.create``: content hash, redaction,
canonical JSON, signature, event ID, interning) costs at most 2x a raw
signature; checking a new event (``check_event`` with keys: shape, canonical
JSON, limits, signed form, signature, content hash, interning) at most 1.3x a
raw verification.

The baselines are pynacl ``SigningKey.sign`` / ``VerifyKey.verify`` of the
very bytes simfed signs (the redacted, unsigned canonical form of each event),
measured in the same run and interleaved with the measured code, so the
ratios are what to watch (absolute microseconds depend on the machine).

Events are realistic room-version-11 PDUs: ``m.room.message`` with a 100-300
byte body, ``m.room.member`` joins with a display name, and
``m.room.power_levels`` with 50 users. Every timed event is distinct (and
never seen before in the process), so interning never short-cuts the work;
``check memo`` re-checks PDUs already checked with ``memo=True`` (signature
cache and intern hits), for information only.

Usage::

    python benchmarks/events.py                 # N=2000 per kind, 5 repeats
    python benchmarks/events.py --quick         # smoke test, a few seconds
    python benchmarks/events.py -n 5000 --repeats 7
    python benchmarks/events.py --profile       # + cProfile top 10 (tottime)

Always exits 0: this prints figures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import statistics
import string
import time

import nacl.signing

from simfed.protocol import Event, check_event, derive_server_key
from simfed.protocol.hashing import _signed_form_bytes, sign_event

BUILD_GOAL = 2.0
CHECK_GOAL = 1.3
KINDS = ("message", "member", "power_levels")
ROOM_ID = "!bench:hs0.test"
SERVERS = [f"hs{i}.test" for i in range(4)]
KEYS = {s: derive_server_key(0, s) for s in SERVERS}
VERIFY_KEYS = {s: {k.key_id: k.verify_key} for s, k in KEYS.items()}


def _fake_id(rng: random.Random) -> str:
    return "$" + "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=43))


def make_fields(kind: str, i: int, tag: str, rng: random.Random) -> tuple[dict, str]:
    """Unsigned fields of one distinct event of ``kind`` and its origin server."""
    server = SERVERS[i % len(SERVERS)]
    sender = f"@user{i % 50}:{server}"
    fields: dict = {
        "room_id": ROOM_ID,
        "sender": sender,
        "prev_events": [_fake_id(rng) for _ in range(rng.choice((1, 1, 1, 2)))],
        "auth_events": [_fake_id(rng) for _ in range(3 if kind == "message" else 4)],
        "depth": 1000 + i,
        "origin_server_ts": 1_700_000_000_000 + i * 997,
    }
    if kind == "message":
        n = rng.randint(100, 300)
        body = f"{tag}-{i} " + " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
                                        for _ in range(n // 4))
        fields.update(type="m.room.message", content={"msgtype": "m.text", "body": body[:n]})
    elif kind == "member":
        fields.update(type="m.room.member", state_key=sender,
                      content={"membership": "join", "displayname": f"User {tag}-{i}",
                               "avatar_url": f"mxc://{server}/{_fake_id(rng)[1:20]}"})
    else:
        users = {f"@user{j}:{SERVERS[j % len(SERVERS)]}": rng.choice((0, 50, 100)) for j in range(50)}
        users[sender] = 100
        fields.update(type="m.room.power_levels", state_key="", content={
            "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.topic": 50,
                       "org.bench.marker": i, "m.room.history_visibility": 100},
            "notifications": {"room": 50},
        })
    return fields, server


def batch(kind: str, n: int, tag: str, seed: int) -> list[tuple[dict, str]]:
    rng = random.Random(f"{seed}/{kind}/{tag}")
    return [make_fields(kind, i, tag, rng) for i in range(n)]


def _timed(fn, *args) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# -- the measured loops ------------------------------------------------------------

def raw_sign(items: list[tuple[nacl.signing.SigningKey, bytes]]) -> None:
    for k, msg in items:
        k.sign(msg)


def raw_verify(items: list[tuple[nacl.signing.VerifyKey, bytes, bytes]]) -> None:
    for vk, msg, sig in items:
        vk.verify(msg, sig)


def build(fields: list[tuple[dict, str]], sink: list) -> None:
    create = Event.create
    for f, server in fields:
        sink.append(create(f, server, KEYS[server], "11"))


def check(pdus: list[dict], sink: list, memo: bool = False) -> None:
    for p in pdus:
        r = check_event(p, "11", VERIFY_KEYS, memo=memo)
        sink.append(r)


# -- preparation (untimed) ---------------------------------------------------------

def signed_pdus(fields: list[tuple[dict, str]]) -> list[dict]:
    """Signed PDUs built without creating (interning) Event objects."""
    return [sign_event(f, s, KEYS[s], "11") for f, s in fields]


def baseline_inputs(pdus: list[dict], fields: list[tuple[dict, str]]):
    nacl_keys = {s: nacl.signing.SigningKey(KEYS[s].seed) for s in SERVERS}
    sign_items, verify_items = [], []
    for p, (_, s) in zip(pdus, fields):
        msg = _signed_form_bytes(p, "11")
        sig = nacl_keys[s].sign(msg).signature
        sign_items.append((nacl_keys[s], msg))
        verify_items.append((nacl_keys[s].verify_key, msg, sig))
    return sign_items, verify_items


def measure_kind(kind: str, n: int, repeats: int, seed: int) -> dict:
    # A distinct batch per repeat and per use, so nothing is ever an intern hit.
    build_fields = [batch(kind, n, f"b{r}", seed) for r in range(repeats)]
    check_fields = [batch(kind, n, f"c{r}", seed) for r in range(repeats)]
    check_pdus = [signed_pdus(f) for f in check_fields]
    sign_items, verify_items = baseline_inputs(check_pdus[0], check_fields[0])
    sizes = [len(m) for _, m in sign_items]
    full = [len(Event.from_pdu(p, "11").canonical_bytes) for p in check_pdus[0][:50]]

    t = {"sign": [], "build": [], "verify": [], "check": [], "memo": []}
    memo_pdus = check_pdus[0]
    for r in range(repeats):  # interleaved, so machine noise hits all alike
        t["sign"].append(_timed(raw_sign, sign_items))
        sink: list = []
        t["build"].append(_timed(build, build_fields[r], sink))
        del sink
        t["verify"].append(_timed(raw_verify, verify_items))
        sink = []
        t["check"].append(_timed(check, check_pdus[r], sink))
        bad = [x for x in sink if x.status != "ok"]
        if bad:
            print(f"WARNING: check_event did not accept {len(bad)} valid {kind} events, e.g. {bad[0]}")
        del sink
    keep: list = []
    check(memo_pdus, keep, True)  # warm the signature cache; keep the Events alive
    for r in range(repeats):
        sink = []
        t["memo"].append(_timed(check, memo_pdus, sink, True))
        del sink
    med = {k: statistics.median(v) / n * 1e6 for k, v in t.items()}  # µs per event
    med["signed_bytes"] = statistics.median(sizes)
    med["pdu_bytes"] = statistics.median(full)
    return med


def profile_kind(kind: str, n: int, seed: int, top: int = 10) -> None:
    fields = batch(kind, n, "pb", seed)
    pdus = signed_pdus(batch(kind, n, "pc", seed))
    for label, fn, args in (("build", build, (fields, [])), ("check", check, (pdus, []))):
        pr = cProfile.Profile()
        pr.runcall(fn, *args)
        out = io.StringIO()
        pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(top)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"\n--- cProfile: {label} of {n} {kind} events, top {top} by tottime ---")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--events", type=int, default=2000, help="distinct events per kind and repeat (default 2000)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default 5)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 200 events, 3 repeats")
    p.add_argument("--profile", action="store_true", help="also print cProfile top 10 of build and check")
    a = p.parse_args(argv)
    n, repeats = (200, 3) if a.quick else (a.events, a.repeats)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            p.error(f"--kinds: {k!r} is not one of {', '.join(KINDS)}")

    print(f"events benchmark: {n} distinct events per kind per repeat, median of {repeats}, room version 11")
    print(f"goal: build <= {BUILD_GOAL}x raw sign, check (new event) <= {CHECK_GOAL}x raw verify\n")
    rows = {k: measure_kind(k, n, repeats, a.seed) for k in kinds}

    hdr = (f"{'kind':<13}{'signed B':>9}{'PDU B':>7} | {'sign us':>8}{'build us':>9}{'ratio':>7} | "
           f"{'verify us':>9}{'check us':>9}{'ratio':>7} | {'memo us':>8}{'memo/ver':>9}")
    print(hdr)
    print("-" * len(hdr))
    for k, m in rows.items():
        print(f"{k:<13}{m['signed_bytes']:>9.0f}{m['pdu_bytes']:>7.0f} | {m['sign']:>8.1f}{m['build']:>9.1f}"
              f"{m['build'] / m['sign']:>7.2f} | {m['verify']:>9.1f}{m['check']:>9.1f}"
              f"{m['check'] / m['verify']:>7.2f} | {m['memo']:>8.1f}{m['memo'] / m['verify']:>9.2f}")
    if len(rows) > 1:  # equal mix of the kinds
        tot = {x: sum(m[x] for m in rows.values()) for x in ("sign", "build", "verify", "check", "memo")}
        print(f"{'mix (equal)':<29} | {tot['sign'] / len(rows):>8.1f}{tot['build'] / len(rows):>9.1f}"
              f"{tot['build'] / tot['sign']:>7.2f} | {tot['verify'] / len(rows):>9.1f}{tot['check'] / len(rows):>9.1f}"
              f"{tot['check'] / tot['verify']:>7.2f} | {tot['memo'] / len(rows):>8.1f}{tot['memo'] / tot['verify']:>9.2f}")
    print("\nper event: 'sign'/'verify' = raw pynacl on the signed form; 'build' = Event.create;")
    print("'check' = check_event on a never-seen PDU; 'memo' = check_event(memo=True) repeat (info only)")
    print(f"events/s: " + ", ".join(f"{k} build {1e6 / m['build']:,.0f} check {1e6 / m['check']:,.0f}"
                                     for k, m in rows.items()))

    print()
    for k, m in rows.items():
        b, c = m["build"] / m["sign"], m["check"] / m["verify"]
        print(f"{k:<13} build {b:.2f}x (goal <= {BUILD_GOAL}x): {'MET' if b <= BUILD_GOAL else 'NOT MET'};"
              f"  check {c:.2f}x (goal <= {CHECK_GOAL}x): {'MET' if c <= CHECK_GOAL else 'NOT MET'}")

    if a.profile:
        for k in kinds:
            profile_kind(k, min(n, 2000), a.seed)
    return 0


if __name__ == "__main__":
    main()
