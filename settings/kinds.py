"""Which event kinds each part of the config may name, chosen from ``core.events.KINDS``.

The kinds themselves (names, Contact ID codes, priorities) are defined once, in
``core.events.KINDS``. Here are only the choices the config makes among them: what a GPIO input
or a Modbus detector reports, what a local alarm rule reacts to. Each name is checked against
the table when this module is imported, so a kind renamed there cannot linger here. Their order
is the order an error message lists them in.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictStr

from core.events import KINDS
from settings.validators import one_of


def event_kinds(*names: str) -> tuple[str, ...]:
    """``names``, each the name of an event kind of ``core.events.KINDS``."""
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise LookupError(f"not event kinds of core.events.KINDS: {', '.join(unknown)}")
    return names


INPUT_REPORTS = event_kinds(
    "panic", "silent_panic", "duress", "fire", "smoke", "heat", "tamper", "door"
)  # fmt: skip
"""What a GPIO input (a press, or a long ``hold_kind`` press) reports."""

SILENCE_INPUT = "silence"
"""The input kind of a button that silences the sirens (it reports ``silenced``, from the
alarm rules, not an event of its own)."""

INPUT_KINDS = (*INPUT_REPORTS, SILENCE_INPUT)

MODBUS_REPORTS = event_kinds("smoke", "gas", "fire", "heat")
"""What a Modbus detector reports when its reading reaches the threshold."""

SUPERVISION_REPORTS = event_kinds("supervision", "rf_supervision")
"""The trouble a silent sensor node reports: wired (Contact ID 147) or radio (381)."""

RULE_KINDS = tuple(dict.fromkeys((*INPUT_REPORTS, *MODBUS_REPORTS)))
"""What a local alarm rule reacts to: anything an input or a Modbus detector reports."""

SIREN_RULE_KINDS = event_kinds("panic", "duress", "fire", "smoke", "heat", "gas", "tamper")
"""What sounds each siren when the file has no ``rules`` key (never ``silent_panic``)."""

RESTORING_KINDS = frozenset(event_kinds("tamper", "door"))
"""Input kinds whose release reports a restore unless ``restore`` says otherwise."""

InputKind = Annotated[StrictStr, AfterValidator(one_of(INPUT_KINDS))]
"""What a GPIO input is. Every kind but ``silence`` is also the event kind it reports."""

AlarmKind = Annotated[StrictStr, AfterValidator(one_of(INPUT_REPORTS))]
"""An event kind an input can report (``silence`` reports nothing)."""

RuleKind = Annotated[StrictStr, AfterValidator(one_of(RULE_KINDS))]
ModbusKind = Annotated[StrictStr, AfterValidator(one_of(MODBUS_REPORTS))]
SupervisionKind = Annotated[StrictStr, AfterValidator(one_of(SUPERVISION_REPORTS))]

assert set(SIREN_RULE_KINDS) <= set(RULE_KINDS) and set(INPUT_REPORTS) >= RESTORING_KINDS
