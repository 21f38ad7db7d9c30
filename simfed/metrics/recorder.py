"""The recorder the simulator pushes facts into, and the tidy tables it builds.

Theory of operation
-------------------
Servers *push* facts (an event was created, an event reached an outcome at a
server, a message was sent, a state was sampled, ...); nothing polls. Each
fact is appended to per-column Python lists (about 1 µs per row); the pandas
DataFrames are built once, by :meth:`Recorder.tables`, with every string
column stored as a categorical. All times are simulated milliseconds (floats).

The recorder only observes: it never calls back into the simulator and never
mutates what it is given (a state mapping is copied the first time its hash
is seen, so later mutation by the caller cannot change the record).

Tables (long format, one row per observation, each with ``run_id``):

``events``       run_id, event_id, room_id, server (creator), sender, type,
                 is_state, created_at, depth, n_prev
``deliveries``   run_id, event_id, room_id, server, outcome, t, via, reason,
                 stage -- one row per (event, server, outcome, stage); the
                 first report of a given (event, server, outcome, stage)
                 wins, later duplicates are counted in
                 :attr:`Recorder.duplicate_outcomes`. ``stage`` is
                 ``outlier`` when the server stored the event only as a
                 state/auth event (state fetch, join, /event_auth: not in its
                 room DAG) and ``timeline`` when the event entered its room
                 DAG (created, pushed, pulled, backfilled; ``dropped`` rows
                 are ``timeline``: the event was on its way there). An
                 outlier that later enters the DAG has a second row.
``state``        run_id, t, server, room_id, up, extremities, state_hash,
                 state_size, backlog
``traffic``      run_id, t_sent, t_done, kind, src, dst, size_bytes,
                 delivered, reason, retransmissions (TCP retransmissions
                 of the message: SYN and data)
``pushes``       run_id, t, src, dst, event_id, role, size_bytes -- one row
                 per copy of an event a server queued for another (role
                 ``origin``: its creator's fan-out; ``forward``: passed on by
                 a relay hub, gossip peer or tree node)
``reader_pages``  run_id, t, t_done, server, room_id, gap, page, holes,
                 events, answered -- one row per page a reader's client
                 asked for (``workload.readers``): the server's gap number
                 and page number, the holes its ``/backfill`` named, the
                 events it added to the room DAG and whether a server
                 answered (see :mod:`simfed.sim.readers`)

Auxiliary tables, needed by the convergence and divergence measures:

``membership``     run_id, t, server, room_id, joined
``perturbations``  run_id, t, kind, detail
``servers``        run_id, server, honest, region
``adversary``      run_id, t, server, behaviour, action, event_id, target,
                   illegitimate -- what each ``[[adversaries]]`` entry did
                   (empty without adversaries)
``state_entries``  run_id, state_hash, type, state_key, event_id -- each
                   distinct state once, keyed by its hash (only for samples
                   that passed a ``state`` mapping).

Parquet: every table round-trips through pyarrow; categoricals come back as
categoricals (pyarrow stores them as dictionary columns).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping

import numpy as np
import pandas as pd

from simfed.metrics.services import SERVICE_TABLE_COLUMNS
from simfed.metrics.statestore import StateStore

__all__ = [
    "Recorder",
    "OUTCOMES",
    "HELD_OUTCOMES",
    "VIAS",
    "STAGES",
    "TABLE_COLUMNS",
    "build_frame",
    "states_from_tables",
]

#: Outcomes an event can reach at a server.
OUTCOMES = ("accepted", "rejected", "soft_failed", "dropped")
#: Outcomes after which the server has persisted the event (it "holds" it).
HELD_OUTCOMES = ("accepted", "soft_failed", "rejected")
#: How an event reached a server.
VIAS = (
    "created",
    "push",
    "get_missing_events",
    "state_fetch",
    "backfill",
    "send_join",
    "event",
    "anti_entropy",
)

#: Where a stored event sits at a server: outside the room DAG (``outlier``:
#: known as a state or auth event only) or in it (``timeline``).
STAGES = ("outlier", "timeline")
_OUTCOME_BITS = {(o, st): 1 << (2 * i + j) for i, o in enumerate(OUTCOMES) for j, st in enumerate(STAGES)}
assert max(_OUTCOME_BITS.values()) < 256  # one byte per (server, event): see Recorder._seen_outcomes

# Column name -> kind ("cat" string categorical, "f" float64, "i" int64,
# "b" bool).  The order is the table's column order.
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "events": {
        "run_id": "cat",
        "event_id": "cat",
        "room_id": "cat",
        "server": "cat",
        "sender": "cat",
        "type": "cat",
        "is_state": "b",
        "created_at": "f",
        "depth": "i",
        "n_prev": "i",
    },
    "deliveries": {
        "run_id": "cat",
        "event_id": "cat",
        "room_id": "cat",
        "server": "cat",
        "outcome": "cat",
        "t": "f",
        "via": "cat",
        "reason": "cat",
        "stage": "cat",
    },
    "state": {
        "run_id": "cat",
        "t": "f",
        "server": "cat",
        "room_id": "cat",
        "up": "b",
        "extremities": "i",
        "state_hash": "cat",
        "state_size": "i",
        "backlog": "i",
    },
    "traffic": {
        "run_id": "cat",
        "t_sent": "f",
        "t_done": "f",
        "kind": "cat",
        "src": "cat",
        "dst": "cat",
        "size_bytes": "i",
        "delivered": "b",
        "reason": "cat",
        "retransmissions": "i",
    },
    "pushes": {
        "run_id": "cat",
        "t": "f",
        "src": "cat",
        "dst": "cat",
        "event_id": "cat",
        "role": "cat",
        "size_bytes": "i",
    },
    "reader_pages": {
        "run_id": "cat",
        "t": "f",
        "t_done": "f",
        "server": "cat",
        "room_id": "cat",
        "gap": "i",
        "page": "i",
        "holes": "i",
        "events": "i",
        "answered": "b",
    },
    "membership": {
        "run_id": "cat",
        "t": "f",
        "server": "cat",
        "room_id": "cat",
        "joined": "b",
    },
    "perturbations": {
        "run_id": "cat",
        "t": "f",
        "kind": "cat",
        "detail": "cat",
    },
    "servers": {
        "run_id": "cat",
        "server": "cat",
        "honest": "b",
        "region": "cat",
    },
    "adversary": {
        "run_id": "cat",
        "t": "f",
        "server": "cat",
        "behaviour": "cat",
        "action": "cat",
        "event_id": "cat",
        "target": "cat",
        "illegitimate": "b",
    },
    "state_entries": {
        "run_id": "cat",
        "state_hash": "cat",
        "type": "cat",
        "state_key": "cat",
        "event_id": "cat",
    },
}


# EDUs and services (presence, profiles, directory, identity): see
# simfed.metrics.services; empty unless [services] enables them.
TABLE_COLUMNS.update(SERVICE_TABLE_COLUMNS)


#: typed-array codes of the number and flag columns
_ARRAY_CODES = {"f": "d", "i": "q", "b": "b"}

#: number columns recorded in a narrower typed array while every value fits
#: exactly (ints from 1 byte; floats 4 bytes while each is a float32, as the
#: sampling times are), widened once when one does not; the table's column
#: is int64 or float64 all the same. The recorder widens them inline (a
#: method per append cost more CPU than the columns are worth elsewhere).
_NARROW = {
    "state": {"t": "f", "extremities": "b", "state_size": "b", "backlog": "b"},
    "traffic": {"size_bytes": "b", "retransmissions": "b"},
    "pushes": {"size_bytes": "b"},
}
_WIDER = {"b": "h", "h": "i", "i": "q", "f": "d"}


def _append_wider(cols: dict, name: str, value: int) -> None:
    """Widen int column ``name`` of ``cols`` until ``value`` fits; append it."""
    while True:
        a = cols[name]
        wider = _WIDER.get(a.typecode)
        if wider is None:
            a.append(value)  # raises OverflowError, as an int64 column did
        a = cols[name] = array(wider, a)
        try:
            a.append(value)
            return
        except OverflowError:
            continue


def _float_wider(cols: dict, name: str, value: float) -> None:
    """``value``, just appended to float column ``name``, did not round-trip
    (or is not a number): widen a float32 column and keep it exactly."""
    a = cols[name]
    if a.typecode == "f":
        a.pop()
        a = cols[name] = array("d", a)
        a.append(value)


class _Codes:
    """A categorical column as it is recorded: each distinct value once and
    a code per row, as narrow as the distinct values allow (1 byte up to
    128 of them, then 2, then 4; a list held an 8-byte reference per row)."""

    __slots__ = ("codes", "values", "index", "limit")

    #: the next wider code once a width's values are used up
    _WIDER = {"b": ("h", 1 << 15), "h": ("i", 1 << 31)}

    def __init__(self) -> None:
        self.codes = array("b")
        self.values: list = []
        self.index: dict = {}
        self.limit = 1 << 7

    def append(self, value: object) -> None:
        i = self.index.get(value)
        if i is None:
            i = len(self.values)
            if i == self.limit:
                code, self.limit = self._WIDER[self.codes.typecode]
                self.codes = array(code, self.codes)
            self.index[value] = i
            self.values.append(value)
        self.codes.append(i)

    def __len__(self) -> int:
        return len(self.codes)

    def to_objects(self) -> np.ndarray:
        """The column's values, one per row."""
        values = np.empty(len(self.values), dtype=object)
        for i, v in enumerate(self.values):
            values[i] = v  # one by one: a tuple value stays one value
        codes = self.codes
        return values[np.frombuffer(codes, dtype=codes.typecode)] if len(codes) else values[:0]


def _new_column(kind: str, typecode: str | None = None) -> list | array | _Codes:
    if kind == "cat":
        return _Codes()
    code = typecode or _ARRAY_CODES.get(kind)
    return [] if code is None else array(code)


def _column(values: list | array | _Codes, kind: str, n: int) -> pd.Series | pd.Categorical:
    if isinstance(values, _Codes):
        values = values.to_objects()
    if kind == "cat":
        cat = pd.Categorical(values)
        cats = cat.categories
        if len(cats) and not all(isinstance(c, str) for c in cats):
            # Non-string identifiers (rare): categories become their str().
            cat = pd.Categorical([None if v is None else str(v) for v in values])
        if len(cat.categories) == 0:
            # Empty (or all-missing) column: give it string categories so a
            # Parquet round trip keeps it categorical.
            cat = pd.Categorical([None] * n, categories=pd.Index([], dtype="str"))
        return cat
    if isinstance(values, array):
        values = np.frombuffer(values, dtype=values.typecode).copy() if len(values) else np.zeros(0)
    if kind == "f":
        return pd.Series(values, dtype="float64")
    if kind == "i":
        return pd.Series(values, dtype="int64")
    if kind == "b":
        return pd.Series(values, dtype="bool")
    raise AssertionError(kind)


def build_frame(name: str, cols: Mapping[str, list]) -> pd.DataFrame:
    """Build table ``name`` from per-column lists, with its canonical dtypes."""
    spec = TABLE_COLUMNS[name]
    n = len(next(iter(cols.values()))) if cols else 0
    return pd.DataFrame(
        {c: _column(cols[c], kind, n) for c, kind in spec.items()}
    )


class Recorder:
    """Collects facts pushed by simulated servers; builds tidy tables at the end.

    Life: created once per run, handed to every server; servers call the
    ``event_created`` / ``event_outcome`` / ``message`` / ``state_sample`` /
    ``membership`` / ``perturbation`` / ``server_info`` methods as things
    happen; the runner calls :meth:`tables` once at the end (it may be called
    again; each call builds fresh frames from the same lists).
    """

    def __init__(self, run_id: str = "run") -> None:
        self.run_id = str(run_id)
        # Numbers and flags go to typed arrays (8 bytes a float, no object
        # each): a big room records millions of rows.
        self._cols: dict[str, dict[str, list | array]] = {
            name: {c: _new_column(kind, _NARROW.get(name, {}).get(c)) for c, kind in spec.items() if c != "run_id"}
            for name, spec in TABLE_COLUMNS.items()
        }
        #: (outcome, stage) pairs reported, per event and server, as the bits
        #: of one byte per (server, event): a bytearray per event indexed by
        #: the server's number in ``_server_ix`` (a dict entry per (server,
        #: event) cost ~25 bytes)
        self._seen_outcomes: dict[str, bytearray] = {}
        self._server_ix: dict[str, int] = {}
        #: Number of (event, server, outcome) reports ignored as repeats.
        self.duplicate_outcomes = 0
        #: Each distinct state, keyed by its hash: {(type, state_key): event_id}
        #: (stored as changes between the states a server samples).
        self.states = StateStore()

    # -- facts ---------------------------------------------------------
    def event_created(
        self,
        t: float,
        server: str,
        event_id: str,
        room_id: str,
        type: str,  # noqa: A002 - the Matrix field name
        is_state: bool,
        depth: int,
        n_prev: int,
        sender: str,
    ) -> None:
        c = self._cols["events"]
        c["event_id"].append(event_id)
        c["room_id"].append(room_id)
        c["server"].append(server)
        c["sender"].append(sender)
        c["type"].append(type)
        c["is_state"].append(bool(is_state))
        c["created_at"].append(float(t))
        c["depth"].append(int(depth))
        c["n_prev"].append(int(n_prev))

    def event_outcome(
        self,
        t: float,
        server: str,
        event_id: str,
        room_id: str,
        outcome: str,
        via: str,
        reason: str | None = None,
        stage: str = "timeline",
    ) -> None:
        """``server`` reached ``outcome`` for an event; ``stage`` says whether
        it stored it as an ``outlier`` or in its room DAG (``timeline``)."""
        bit = _OUTCOME_BITS.get((outcome, stage))
        if bit is None:
            if outcome not in OUTCOMES:
                raise ValueError(
                    f"outcome={outcome!r} is not one of {', '.join(OUTCOMES)}"
                )
            raise ValueError(f"stage={stage!r} is not one of {', '.join(STAGES)}")
        ix = self._server_ix.get(server)
        if ix is None:
            ix = self._server_ix[server] = len(self._server_ix)
        seen = self._seen_outcomes.get(event_id)
        if seen is None:
            seen = self._seen_outcomes[event_id] = bytearray(len(self._server_ix))
        elif ix >= len(seen):
            seen.extend(bytes(ix + 1 - len(seen)))
        mask = seen[ix]
        if mask & bit:
            self.duplicate_outcomes += 1
            return
        seen[ix] = mask | bit
        c = self._cols["deliveries"]
        c["event_id"].append(event_id)
        c["room_id"].append(room_id)
        c["server"].append(server)
        c["outcome"].append(outcome)
        c["t"].append(float(t))
        c["via"].append(via)
        c["reason"].append(None if reason is None else str(reason))
        c["stage"].append(stage)

    def message(
        self,
        t_sent: float,
        t_done: float,
        kind: str,
        src: str,
        dst: str,
        size_bytes: int,
        delivered: bool,
        reason: str | None = None,
        retransmissions: int = 0,
    ) -> None:
        c = self._cols["traffic"]
        c["t_sent"].append(float(t_sent))
        c["t_done"].append(float(t_done))
        c["kind"].append(kind)
        c["src"].append(src)
        c["dst"].append(dst)
        size_bytes = int(size_bytes)
        try:
            c["size_bytes"].append(size_bytes)
        except OverflowError:
            _append_wider(c, "size_bytes", size_bytes)
        c["delivered"].append(bool(delivered))
        c["reason"].append(None if reason is None else str(reason))
        retransmissions = int(retransmissions)
        try:
            c["retransmissions"].append(retransmissions)
        except OverflowError:
            _append_wider(c, "retransmissions", retransmissions)

    def state_sample(
        self,
        t: float,
        server: str,
        room_id: str,
        up: bool,
        extremities: int,
        state_hash: str,
        state_size: int,
        backlog: int,
        state: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        c = self._cols["state"]
        t = float(t)
        col = c["t"]
        col.append(t)
        if col[-1] != t:
            _float_wider(c, "t", t)
        c["server"].append(server)
        c["room_id"].append(room_id)
        c["up"].append(bool(up))
        for name, v in (("extremities", extremities), ("state_size", state_size), ("backlog", backlog)):
            v = int(v)
            try:
                c[name].append(v)
            except OverflowError:
                _append_wider(c, name, v)
        c["state_hash"].append(state_hash)
        if state is not None:
            self.states.add(state_hash, state, server)

    def membership(self, t: float, server: str, room_id: str, joined: bool) -> None:
        c = self._cols["membership"]
        c["t"].append(float(t))
        c["server"].append(server)
        c["room_id"].append(room_id)
        c["joined"].append(bool(joined))

    def push(self, t: float, src: str, dst: str, event_id: str, role: str, size_bytes: int) -> None:
        """``src`` queued one copy of an event for ``dst`` (role ``origin`` or ``forward``)."""
        c = self._cols["pushes"]
        c["t"].append(float(t))
        c["src"].append(src)
        c["dst"].append(dst)
        c["event_id"].append(event_id)
        c["role"].append(role)
        size_bytes = int(size_bytes)
        try:
            c["size_bytes"].append(size_bytes)
        except OverflowError:
            _append_wider(c, "size_bytes", size_bytes)

    def reader_page(self, t: float, t_done: float, server: str, room_id: str, gap: int, page: int, holes: int,
                    events: int, answered: bool) -> None:
        self._row("reader_pages", float(t), float(t_done), server, room_id, int(gap), int(page), int(holes),
                  int(events), bool(answered))

    def perturbation(self, t: float, kind: str, detail: str = "") -> None:
        c = self._cols["perturbations"]
        c["t"].append(float(t))
        c["kind"].append(kind)
        c["detail"].append(str(detail))

    def server_info(self, server: str, honest: bool, region: str | None) -> None:
        c = self._cols["servers"]
        c["server"].append(server)
        c["honest"].append(bool(honest))
        c["region"].append(region)

    def adversary_action(self, t: float, server: str, behaviour: str, action: str, event_id: str = "",
                         target: str = "", illegitimate: bool = False) -> None:
        """One thing an adversary did ([[adversaries]]): ``illegitimate``
        marks an event no honest server should accept into its state."""
        self._row("adversary", float(t), server, behaviour, action, event_id, target, bool(illegitimate))

    # -- EDUs and services (see simfed.metrics.services) ---------------
    def _row(self, table: str, *values: object) -> None:
        for col, v in zip(self._cols[table].values(), values):
            col.append(v)

    def edu(self, t: float, src: str, dst: str, edu_type: str, entries: int, size_bytes: int) -> None:
        self._row("edus", float(t), src, dst, edu_type, int(entries), int(size_bytes))

    def presence(self, t: float, server: str, user: str, state: str, currently_active: bool,
                 last_active_ago: int, role: str, n_audience: int, reason: str) -> None:
        self._row("presence", float(t), server, user, state, bool(currently_active), int(last_active_ago), role,
                  int(n_audience), reason)

    def profile(self, t: float, server: str, user: str, kind: str, displayname: str | None,
                event_id: str | None, latency_ms: float, outcome: str, errcode: str | None) -> None:
        self._row("profiles", float(t), server, user, kind, displayname, event_id, float(latency_ms), outcome,
                  errcode)

    def directory(self, t: float, server: str, alias: str, kind: str, room_id: str | None, n_servers: int,
                  latency_ms: float, outcome: str, cached: bool, errcode: str | None) -> None:
        self._row("directory", float(t), server, alias, kind, room_id, int(n_servers), float(latency_ms), outcome,
                  bool(cached), errcode)

    def identity(self, t: float, node: str, kind: str, medium: str, address: str, mxid: str | None,
                 ref: str | None, t_bound: float, latency_ms: float, outcome: str, errcode: str | None) -> None:
        self._row("identity", float(t), node, kind, medium, address, mxid, ref, float(t_bound), float(latency_ms),
                  outcome, errcode)

    # -- results -------------------------------------------------------
    def _state_entry_cols(self) -> dict[str, list]:
        h: list = []
        ty: list = []
        sk: list = []
        ev: list = []
        for state_hash, mapping in self.states.items():
            for (etype, skey), eid in sorted(mapping.items()):
                h.append(state_hash)
                ty.append(etype)
                sk.append(skey)
                ev.append(eid)
        return {"state_hash": h, "type": ty, "state_key": sk, "event_id": ev}

    def tables(self) -> dict[str, pd.DataFrame]:
        """Build every table (see the module docstring) as a DataFrame."""
        out: dict[str, pd.DataFrame] = {}
        for name in TABLE_COLUMNS:
            cols = (
                self._state_entry_cols()
                if name == "state_entries"
                else self._cols[name]
            )
            n = len(next(iter(cols.values())))
            cols = {"run_id": [self.run_id] * n, **cols}
            out[name] = build_frame(name, cols)
        return out

    def rows(self, table: str) -> int:
        """How many rows ``table`` has so far (cheap: no frame is built)."""
        return len(next(iter(self._cols[table].values())))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={self.rows(name)}" for name in self._cols)
        return f"Recorder(run_id={self.run_id!r}, {sizes})"


def states_from_tables(tables: Mapping[str, pd.DataFrame]) -> dict[str, dict[tuple[str, str], str]]:
    """Rebuild ``{state_hash: {(type, state_key): event_id}}`` from ``state_entries``."""
    df = tables.get("state_entries")
    out: dict[str, dict[tuple[str, str], str]] = {}
    if df is None or df.empty:
        return out
    for h, ty, sk, ev in zip(
        df["state_hash"].astype(object),
        df["type"].astype(object),
        df["state_key"].astype(object),
        df["event_id"].astype(object),
    ):
        out.setdefault(str(h), {})[(str(ty), str(sk))] = str(ev)
    return out

