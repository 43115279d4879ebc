"""The lifecycle table, its refusals and messages, and each face's status names."""

import itertools

import pytest

from tasks_app import lifecycle
from tasks_app.lifecycle import STATUSES, TERMINAL, Status, TransitionError, check_transition


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_every_pair_follows_the_table(current, target):
    allowed = target == current or target in lifecycle.TRANSITIONS[current]
    if allowed:
        check_transition(current, target)
        assert lifecycle.can_transition(current, target)
    else:
        with pytest.raises(TransitionError) as info:
            check_transition(current, target)
        assert not lifecycle.can_transition(current, target)
        assert info.value.allowed == sorted(lifecycle.TRANSITIONS[current])


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_retry_only_takes_a_finished_task_back_to_pending(current, target):
    if current in TERMINAL and target == Status.PENDING:
        check_transition(current, target, retry=True)
    else:
        with pytest.raises(TransitionError):
            check_transition(current, target, retry=True)


def test_the_table_covers_every_status_and_nothing_else():
    assert set(lifecycle.TRANSITIONS) == set(STATUSES)
    for targets in lifecycle.TRANSITIONS.values():
        assert targets <= set(STATUSES)
    assert set(STATUSES) == lifecycle.ACTIVE | TERMINAL
    assert not lifecycle.ACTIVE & TERMINAL


def test_it_refuses_completed_to_pending_without_retry():
    with pytest.raises(TransitionError) as info:
        check_transition(Status.COMPLETED, Status.PENDING)
    assert "retry" in str(info.value)
    check_transition(Status.COMPLETED, Status.PENDING, retry=True)


def test_retrying_a_pending_task_is_refused_not_a_no_op():
    with pytest.raises(TransitionError) as info:
        check_transition(Status.PENDING, Status.PENDING, retry=True)
    assert "Only a finished task can be retried" in str(info.value)


def test_it_allows_executing_to_paused_and_paused_back_to_executing():
    check_transition(Status.EXECUTING, Status.PAUSED)
    check_transition(Status.PAUSED, Status.EXECUTING)


def test_it_refuses_completed_to_executing_as_final():
    with pytest.raises(TransitionError) as info:
        check_transition(Status.COMPLETED, Status.EXECUTING)
    assert "final" in str(info.value)
    assert info.value.allowed == []


def test_terminal_statuses_are_dead_ends():
    for status in TERMINAL:
        assert lifecycle.allowed_next(status) == frozenset()
        assert lifecycle.is_terminal(status)
    for status in (Status.PENDING, Status.EXECUTING, Status.PAUSED, Status.INTERRUPTED):
        assert not lifecycle.is_terminal(status)
        assert Status.COMPLETED in lifecycle.allowed_next(status)


def test_pending_cannot_be_interrupted_and_paused_cannot_go_back_to_pending():
    with pytest.raises(TransitionError):
        check_transition(Status.PENDING, Status.INTERRUPTED)
    with pytest.raises(TransitionError):
        check_transition(Status.PAUSED, Status.PENDING)


def test_the_message_names_the_allowed_next_statuses():
    with pytest.raises(TransitionError) as info:
        check_transition(Status.PAUSED, Status.PENDING)
    message = str(info.value)
    for status in lifecycle.TRANSITIONS[Status.PAUSED]:
        assert status in message
    assert "allowed next" in message


def test_an_unknown_status_is_refused_by_name():
    with pytest.raises(TransitionError) as info:
        check_transition(Status.PENDING, "running")
    assert "'running'" in str(info.value)


@pytest.mark.parametrize("face", list(lifecycle.FACES.values()), ids=list(lifecycle.FACES))
def test_each_face_name_round_trips(face):
    for name in face.names():
        assert face.render(face.parse(name)) == name


@pytest.mark.parametrize("face", list(lifecycle.FACES.values()), ids=list(lifecycle.FACES))
def test_every_canonical_status_renders_to_a_face_name(face):
    for status in STATUSES:
        assert face.render(status) in face.names()


@pytest.mark.parametrize("face", list(lifecycle.FACES.values()), ids=list(lifecycle.FACES))
def test_faces_parse_only_their_own_names(face):
    with pytest.raises(ValueError) as info:
        face.parse("NOT-A-STATUS")
    assert "expected one of" in str(info.value)


def test_face_names_match_the_seeds():
    assert lifecycle.AGENTEX.parse("RUNNING") == Status.EXECUTING
    assert lifecycle.AGENTEX.render(Status.STOPPED) == "CANCELED"
    assert lifecycle.JSONRPC.parse("in_progress") == Status.EXECUTING
    assert lifecycle.JSONRPC.render(Status.TIMED_OUT) == "failed"
    assert lifecycle.XPANDER.render(Status.INTERRUPTED) == "paused"
    assert lifecycle.NATIVE.names() == list(STATUSES)
