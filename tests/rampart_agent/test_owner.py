"""The state directory's owner lock (owner.py) against a planted symlink."""

import os

import pytest

from rampart_agent.owner import OWNER_FILE, Owner


def test_a_symlink_planted_as_the_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / OWNER_FILE).symlink_to(victim)
    with pytest.raises(OSError):
        Owner(state).try_acquire("apply")
    assert victim.read_text() == "precious\n"


def test_the_lock_is_taken_once_and_names_its_holder(tmp_path):
    first, second = Owner(tmp_path), Owner(tmp_path)
    assert first.try_acquire("serve")
    assert not second.try_acquire("apply")
    assert second.holder() == (os.getpid(), "serve")
    first.release()
    assert second.try_acquire("apply")
    second.release()
