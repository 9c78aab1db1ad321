"""Regression: ``OverflowError`` from the JSON TDX event log (exit 70 instead of 1).

``1e999`` decodes to an infinite float and ``int(inf)`` raises ``OverflowError``, which the parser did
not map; a huge ``event_type`` passed the parser unchecked. Both are ``MalformedEvidence`` now.
"""

from __future__ import annotations

import pytest

from ccai.errors import MalformedEvidence
from ccai.evidence import parse_json_event_log

DIGEST = "00" * 48


@pytest.mark.parametrize(
    "log",
    [
        f'[{{"imr": 1e999, "event_type": 1, "digest": "{DIGEST}"}}]',
        f'[{{"imr": -1e999, "event_type": 1, "digest": "{DIGEST}"}}]',
        f'[{{"imr": 0, "event_type": 1e999, "digest": "{DIGEST}"}}]',
        f'[{{"imr": 0, "event_type": {2**64}, "digest": "{DIGEST}"}}]',
        f'[{{"imr": 0, "event_type": -1, "digest": "{DIGEST}"}}]',
        f'[{{"imr": 0, "event_type": {"9" * 5000}, "digest": "{DIGEST}"}}]',
    ],
)
def test_out_of_range_numbers_are_malformed(log: str) -> None:
    with pytest.raises(MalformedEvidence, match=r"TDX JSON event log is (malformed|not acceptable JSON)"):
        parse_json_event_log(log)


def test_largest_event_type_is_accepted() -> None:
    (event,) = parse_json_event_log(f'[{{"imr": 2, "event_type": {2**32 - 1}, "digest": "{DIGEST}"}}]')
    assert event.event_type == 2**32 - 1 and event.rtmr == 2
