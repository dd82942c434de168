"""The short human text of a notification, in the console's language (Vietnamese or English).

Every word the notifications say is in ``MESSAGES``; nothing else in the package holds text
meant for people. For example::

    Báo động PANIC tại Chợ An Đông, cổng 1 (34 An Dương Vương) chưa được xác nhận sau 1 phút
    PANIC alarm at Chợ An Đông, cổng 1 (34 An Dương Vương) not acknowledged after 1 min
"""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("vi", "en")

MESSAGES: Final[dict[str, dict[str, str]]] = {
    "vi": {
        "alarm": "Báo động {kind}",
        "trouble": "Sự cố {kind}",
        "detection": "Phát hiện {kind}",
        "escalated": "{what} tại {where} chưa được xác nhận sau {after}",
        "acknowledged": "{what} tại {where} đã được {user} xác nhận",
        "restored": "{what} tại {where} đã tự khôi phục",
        "closed": "{what} tại {where} đã được đóng",
        "h": "{n} giờ",
        "min": "{n} phút",
        "s": "{n} giây",
    },
    "en": {
        "alarm": "{kind} alarm",
        "trouble": "{kind} trouble",
        "detection": "{kind} detection",
        "escalated": "{what} at {where} not acknowledged after {after}",
        "acknowledged": "{what} at {where} acknowledged by {user}",
        "restored": "{what} at {where} restored by itself",
        "closed": "{what} at {where} closed",
        "h": "{n} h",
        "min": "{n} min",
        "s": "{n} s",
    },
}

CLASSES: Final = ("alarm", "trouble", "detection")  # by priority: 0, 1, 2


def alert_class(priority: int) -> str:
    """ "alarm", "trouble" or "detection" (what ``[escalation] alerts`` lists)."""
    return CLASSES[min(max(priority, 0), len(CLASSES) - 1)]


def what(language: str, priority: int, kind: str) -> str:
    """ "Báo động PANIC", "PANIC alarm"."""
    shown = kind.replace("_", " ").upper()
    return MESSAGES[language][alert_class(priority)].format(kind=shown)


def where(hub: str, name: str | None, place: str | None) -> str:
    """The hub's name and place, "Chợ An Đông, cổng 1 (34 An Dương Vương)"; its id if it has
    no name."""
    shown = name or hub
    return f"{shown} ({place})" if place else shown


def duration(language: str, seconds: float) -> str:
    """ "1 phút", "1 min 30 s", "2 h"; below a minute the seconds as given ("0.5 s")."""
    words = MESSAGES[language]
    if seconds < 60:
        return words["s"].format(n=f"{seconds:g}")
    total = round(seconds)
    parts = []
    for unit, size in (("h", 3600), ("min", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(words[unit].format(n=count))
    return " ".join(parts)


def text(language: str, message: str, **fields: str) -> str:
    """One of the sentences of ``MESSAGES`` with its fields."""
    return MESSAGES[language][message].format(**fields)
