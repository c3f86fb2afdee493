import math

import pytest

from onebit.schedule import cycle_end_epochs, cycles, is_restart, lr_at


def test_cycle_totals_of_both_papers():
    assert cycle_end_epochs(1, 2, 7) == [1, 3, 7, 15, 31, 63, 127]  # workshop: 63 / 127
    assert cycle_end_epochs(2, 2, 7) == [2, 6, 14, 30, 62, 126, 254]  # ICLR: 30 / 62 / 126 / 254


@pytest.mark.parametrize("t0,tmult,epochs", [(1, 2, 63), (2, 2, 126), (3, 1, 12)])
def test_lr_is_back_at_max_on_the_first_step_of_every_cycle(t0, tmult, epochs):
    spe = 7
    starts = [s for s, _ in cycles(t0, tmult, epochs)]
    for step in range(epochs * spe):
        lr = lr_at(step, spe, 0.1, 1e-5, t0, tmult)
        assert 1e-5 <= lr <= 0.1
        assert is_restart(step, spe, t0, tmult) == (step % spe == 0 and step // spe in starts)
        if is_restart(step, spe, t0, tmult):
            assert lr == 0.1
    for start, length in cycles(t0, tmult, epochs):  # each cycle anneals down to its last step
        n = length * spe
        lrs = [lr_at(start * spe + i, spe, 0.1, 1e-5, t0, tmult) for i in range(n)]
        assert lrs == sorted(lrs, reverse=True)
        assert math.isclose(lrs[-1], 1e-5 + 0.5 * (0.1 - 1e-5) * (1 + math.cos(math.pi * (n - 1) / n)))


def test_cosine_midpoint_and_monotone_within_cycle():
    spe = 10
    assert math.isclose(lr_at(10 + 10, spe, 0.1, 0.0, 1, 2), 0.05)  # middle of the 2-epoch cycle
    lrs = [lr_at(s, spe, 0.1, 0.0, 1, 2) for s in range(10, 30)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_bad_schedule_is_refused():
    with pytest.raises(ValueError):
        cycles(0, 2, 10)
