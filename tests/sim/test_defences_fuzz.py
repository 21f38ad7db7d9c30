"""Hostile data never makes a defence raise: ACL content, globs, fetch answers."""

from __future__ import annotations

import fnmatch
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from simfed.protocol.acl import ServerAcl, glob_matches
from simfed.sim.defences_answers import ANSWER_FIELDS, check_answer

from strategies import json_values

names = st.text(alphabet="abch.:[]*?0123456789-", max_size=40)


@settings(max_examples=300, deadline=None)
@given(content=json_values(), server=names)
def test_acl_content_never_raises(content, server):
    acl = ServerAcl.from_content(content if isinstance(content, dict) else {"allow": content, "deny": content})
    assert acl.allows(server) in (True, False)


@settings(max_examples=300, deadline=None)
@given(glob=st.text(alphabet="ab*?.", max_size=60), name=st.text(alphabet="ab.", max_size=30))
def test_glob_agrees_with_a_reference_matcher(glob, name):
    # fnmatch's translation (no [] in these alphabets) is an independent reference
    assert glob_matches(glob, name) is bool(re.fullmatch(fnmatch.translate(glob), name, re.DOTALL))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(ANSWER_FIELDS)), request=json_values(), answer=json_values())
def test_check_answer_never_raises(kind, request, answer):
    assert check_answer(kind, request, answer) in (None, "shape", "wrong_room", "not_requested", "over_limit")
