"""What a reload compares: changed keys, and which transports it adds, rebuilds or removes."""

from __future__ import annotations

from spoolerd.config import parse_config
from spoolerd.reconfigure import (
    TransportPlan,
    _keeping_running,
    _restart_only,
    changed_keys,
    plan_transports,
)


def test_changed_keys_are_dotted_paths_of_differing_leaves() -> None:
    old = {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "gone": 1}
    new = {"a": 1, "b": {"c": 5, "d": {"e": 3, "f": 4}}, "new": {"x": 1}}
    assert changed_keys(old, new) == ["b.c", "b.d.f", "gone", "new"]
    assert changed_keys(old, old) == []


def test_plan_adds_rebuilds_and_removes_transports() -> None:
    old = parse_config(
        {
            "spooler": {"transport_concurrency": 4},
            "transports": {
                "a": {"provider": "loopback"},
                "b": {"provider": "loopback", "concurrency": 2},
                "c": {"provider": "loopback"},
            },
        }
    )
    same = parse_config(old.model_dump(mode="json"))
    assert plan_transports(old, same) == TransportPlan([], [], [], reordered=False)
    new = parse_config(
        {
            "spooler": {"transport_concurrency": 8},  # a's effective limit changes, b's does not
            "transports": {
                "c": {"provider": "loopback"},
                "b": {"provider": "loopback", "concurrency": 2},
                "a": {"provider": "loopback"},
                "d": {"provider": "loopback"},
            },
        }
    )
    plan = plan_transports(old, new)
    assert (plan.added, plan.changed, plan.removed) == (["d"], ["c", "a"], [])
    assert plan.reordered


def test_restart_only_values_keep_their_running_value() -> None:
    running = parse_config({"spooler": {"state_dir": "/a", "max_in_flight": 2}})
    new = parse_config(
        {
            "spooler": {"state_dir": "/b", "max_in_flight": 3},
            "control": {"socket": "/b.sock"},
            "stores": {"local": {"addresses": ["@example.org"]}, "other": {}},
            "transports": {"x": {"provider": "loopback"}},
            "webhooks": {"app": {"url": "http://h/", "secret_env": "S"}},
        }
    )
    kept = _keeping_running(running, new)
    assert kept.webhooks == {}  # its senders were made at start
    assert str(kept.spooler.state_dir) == "/a" and kept.control.socket is None
    assert set(kept.stores) == {"local"} and kept.spooler.max_in_flight == 3 and set(kept.transports) == {"x"}
    changed = changed_keys(running.model_dump(), new.model_dump())
    assert [k for k in changed if _restart_only(k)] == [
        "spooler.state_dir",
        "control.socket",
        "stores.local.addresses",
        "stores.other",
        "webhooks.app",
    ]
