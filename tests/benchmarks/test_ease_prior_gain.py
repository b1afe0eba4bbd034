"""The EASE prior's gain is chosen by T on validation, but never at more than a noise-sized cost on B."""

from __future__ import annotations

from typing import Any

from benchmarks.ease_prior_gain import GAINS, choose


def _rows(t: dict[float, float], b: dict[float, float]) -> list[dict[str, Any]]:
    return [
        {"seed": 0, "protocol": protocol, "gain": gain, "all_top_10": table.get(gain, 0.0), "all_top_100": 0.5}
        for protocol, table in (("T", t), ("B", b))
        for gain in GAINS
    ]


def test_the_best_t_gain_is_chosen_while_b_stays_within_tolerance() -> None:
    t = {0.0: 0.15, 0.5: 0.17, 1.0: 0.18}
    b = {0.0: 0.200, 0.5: 0.198, 1.0: 0.19}
    assert choose(_rows(t, b))["chosen_gain"] == 0.5  # 1.0 wins on T but costs B 0.01
    b[1.0] = 0.196
    result = choose(_rows(t, b))
    assert result["chosen_gain"] == 1.0
    assert result["means"]["T gain_1"]["all_top_10"] == 0.18


def test_without_any_gain_on_t_the_prior_stays_off() -> None:
    t = dict.fromkeys(GAINS, 0.15)
    t[0.0] = 0.16
    assert choose(_rows(t, dict.fromkeys(GAINS, 0.2)))["chosen_gain"] == 0.0
