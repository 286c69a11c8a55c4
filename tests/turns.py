"""Expected turns written by hand: (role, text, own) for each role the loader gives."""

from __future__ import annotations


def U(text: str) -> tuple[str, str, bool]:
    return ("user", text, True)


def A(text: str) -> tuple[str, str, bool]:
    return ("assistant", text, True)


def S(text: str) -> tuple[str, str, bool]:
    return ("system", text, False)


def C(text: str) -> tuple[str, str, bool]:
    return ("tool_call", text, True)


def R(text: str) -> tuple[str, str, bool]:
    return ("tool", text, False)


def T(text: str) -> tuple[str, str, bool]:
    return ("tools", text, False)
