"""faustfix/vitals.py without a worker: what counts as an agent's death, and that it stops the worker once."""

from __future__ import annotations

import asyncio

import pytest

from streams.faustfix.vitals import Vitals


class App:
    should_stop = False


def run(vitals: Vitals, name: str, body) -> None:
    async def go() -> None:
        await vitals.guard(name, body)
        await asyncio.sleep(0.05)  # the stop is scheduled after `delay`

    asyncio.run(go())


def test_an_exception_out_of_the_loop_is_a_death_that_stops_the_worker_once():
    stops: list[int] = []
    vitals = Vitals(App(), delay=0, stop=lambda: stops.append(1))

    async def boom() -> None:
        raise OverflowError("int too big to convert")

    run(vitals, "fold", boom)
    run(vitals, "admit-sales", boom)
    assert vitals.dead == {"fold": "OverflowError('int too big to convert')",
                           "admit-sales": "OverflowError('int too big to convert')"}
    assert stops == [1]


def test_a_loop_that_ends_while_the_worker_runs_is_a_death():
    vitals = Vitals(App(), delay=0, stop=lambda: None)

    async def ends() -> None:
        return None

    run(vitals, "fold", ends)
    assert vitals.dead == {"fold": "its loop ended while the worker runs"}


def test_stopping_and_cancellation_are_not_deaths():
    app = App()
    app.should_stop = True
    vitals = Vitals(app, delay=0, stop=lambda: pytest.fail("stopped"))

    async def boom() -> None:
        raise RuntimeError("consumer closed")

    run(vitals, "fold", boom)

    async def cancelled() -> None:
        raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(vitals.guard("fold", cancelled))
    assert vitals.dead == {}
