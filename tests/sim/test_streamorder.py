"""Stream numbers kept by event behave as one dict per server would."""

from __future__ import annotations

import random

from simfed.sim.streamorder import StreamOrder


def test_stream_numbers_match_a_dict_per_server():
    rng = random.Random(7)
    order = StreamOrder()
    streams = [order.server() for _ in range(5)]
    dicts: list[dict[str, int]] = [{} for _ in streams]
    events = [f"$e{i}" for i in range(60)]
    for _ in range(2000):
        k = rng.randrange(len(streams) + 1)
        if k == len(streams):  # a server that joins the run late (a longer row)
            streams.append(order.server())
            dicts.append({})
            continue
        eid = rng.choice(events)
        streams[k].add(eid)
        dicts[k].setdefault(eid, len(dicts[k]))
    for s, d in zip(streams, dicts):
        assert len(s) == len(d)
        for eid in events + ["$never"]:
            assert s.get(eid, -1) == d.get(eid, -1)
            assert s.get(eid, 99) == d.get(eid, 99)
