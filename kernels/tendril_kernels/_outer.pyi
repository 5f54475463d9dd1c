from typing import Any

VARIANT: str

def nesterov(
    theta: Any, momentum: Any | None, acc: Any, update: Any, weight: float, lr: float, mu: float, /
) -> None: ...
def fold(acc: Any, delta: Any, weight: float, first: bool, /) -> None: ...
