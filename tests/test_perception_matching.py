"""Hungarian matching, focal loss, Chamfer distance and AP on hand-computed cases."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.losses import sigmoid_focal_loss
from perception.map_eval import average_precision, chamfer
from perception.matching import hungarian, polyline_l1


def test_hungarian_finds_the_hand_computed_optimum():
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    # Greedy would take (1,1)=0 first; the optimum is (0,1)+(1,0)+(2,2) = 1 + 2 + 2 = 5.
    rows, cols = hungarian(cost)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0, 2: 2}
    assert float(cost[rows, cols].sum()) == 5.0


def test_hungarian_with_more_queries_than_targets_and_with_none():
    rows, cols = hungarian(torch.tensor([[5.0], [1.0], [3.0]]))
    assert rows.tolist() == [1] and cols.tolist() == [0]
    rows, cols = hungarian(torch.zeros(3, 0))
    assert len(rows) == 0 and len(cols) == 0


def test_polyline_l1_ignores_direction():
    line = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]])
    shifted_reversed = line.flip(1) + torch.tensor([0.0, 0.5])
    assert torch.allclose(polyline_l1(line, shifted_reversed), torch.tensor([[0.25]]))  # mean over x and y of |0.5|, |0|


def test_focal_loss_golden_value():
    # logit 0 -> p = 0.5; target 1: alpha 0.25 * ln 2 * (1 - 0.5)^2
    loss = sigmoid_focal_loss(torch.zeros(1), torch.ones(1), alpha=0.25, gamma=2.0)
    assert math.isclose(float(loss), 0.25 * math.log(2) * 0.25, rel_tol=1e-6)


def test_chamfer_of_parallel_lines_is_their_gap():
    a = np.stack([np.linspace(0, 10, 11), np.zeros(11)], 1)
    assert math.isclose(chamfer(a, a + [0.0, 1.0]), 1.0)


def test_average_precision_hand_case():
    # hits at ranks 1 and 3 of 2 GT: precision 1 at recall 0.5, 2/3 at recall 1 -> 0.5 + 0.5 * 2/3
    assert math.isclose(average_precision(np.array([1.0, 0.0, 1.0]), 2), 0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([0.0, 0.0]), 2) == 0.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(0, 100), min_size=4, max_size=4), min_size=4, max_size=4))
def test_hungarian_is_never_worse_than_identity(rows):
    cost = torch.tensor(rows)
    r, c = hungarian(cost)
    assert float(cost[r, c].sum()) <= float(cost.diagonal().sum()) + 1e-4
    assert sorted(c.tolist()) == [0, 1, 2, 3]
