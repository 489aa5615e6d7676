"""RecordingDataplane refuses what the kernel would, so engine tests exercise real refusals."""

import pytest

from rampart_agent.dataplane import DataplaneError, RecordingDataplane


def test_a_table_is_applied_whole_or_not_at_all():
    dp = RecordingDataplane()
    dp.restore("v4", "*filter\n:RPT-A - [0:0]\n-A RPT-A -j ACCEPT\n-A INPUT -j RPT-A\nCOMMIT\n")
    with pytest.raises(DataplaneError, match="RPT-MISSING does not exist"):
        dp.restore("v4", "*filter\n-A RPT-A -j RPT-MISSING\nCOMMIT\n")
    live = dp.read("v4")["filter"]
    assert [r.text for r in live.chains["RPT-A"]] == ["-j ACCEPT"]
    assert [(j.position, j.target) for j in live.jumps()["INPUT"]] == [(1, "RPT-A")]


@pytest.mark.parametrize(
    "payload, error",
    [
        ("-X RPT-A\n", "not empty"),
        ("-F RPT-A\n-X RPT-A\n", "still referenced"),
        (":RPT-B - [0:0]\n-A RPT-B -j RPT-A\n-A RPT-A -j RPT-B\n", "loop"),
        ("-I RPT-A 5 -j DROP\n", "Index of insertion too big"),
    ],
)
def test_kernel_refusals(payload, error):
    dp = RecordingDataplane()
    dp.restore("v4", "*filter\n:RPT-A - [0:0]\n-A RPT-A -j ACCEPT\n-A INPUT -j RPT-A\nCOMMIT\n")
    with pytest.raises(DataplaneError, match=error):
        dp.restore("v4", f"*filter\n{payload}COMMIT\n")


def test_sets_in_use_are_not_destroyed_and_the_state_survives_a_new_instance(tmp_path):
    path = tmp_path / "kernel.json"
    dp = RecordingDataplane(path=path)
    dp.ipset_restore("create rpt-a hash:net\nadd rpt-a 198.18.0.0/15\ncreate rpt-b hash:net\n")
    dp.restore(
        "v4", "*filter\n:RPT-A - [0:0]\n-A RPT-A -m set --match-set rpt-a src -j DROP\nCOMMIT\n"
    )
    assert dp.ipset_destroy(["rpt-a", "rpt-b"]) == ["rpt-a"]
    again = RecordingDataplane(path=path)
    assert again.ipset_list() == {"rpt-a": 1}
    assert "RPT-A" in again.read("v4")["filter"].chains
