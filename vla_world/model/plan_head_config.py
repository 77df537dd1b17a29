"""The plan head's config (`model.plan_head` of a stage config), apart from the head itself.

Why a module of its own: reading a stage config must not import torch (tests/test_layers.py), and
`vla_world/model/plan_head.py`, which fits and runs the head, does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PlanHeadConfig:
    """Whether the planning stage fits a plan head, and how (config `model.plan_head`)."""

    enabled: bool = False  # fit the head after the LLM steps; inference then reads trajectories from it
    hidden: int = 128  # width of each hidden layer of the MLP
    layers: int = 2  # hidden layers (ReLU)
    members: int = 5  # MLPs fitted from their own init and data order; the head answers with their mean
    epochs: int = 50  # passes over the train keyframes' fixed hidden states, per member (features are cached)
    lr: float = 2e-3  # AdamW learning rate of the fit
    batch_size: int = 32  # keyframes per fit step
    weight_decay: float = 1e-4
    # also read the prompt's ego state (planning.baselines.ego_features: past poses, velocity, acceleration,
    # yaw rate, speed, command; 21 numbers) beside the hidden state, as planners with an ego-status input do
    ego_state: bool = False
    # read the hidden state through its top `state_components` principal directions over the train keyframes
    # (0: the whole state); fewer inputs than keyframes keep the fit from memorising the LLM's state
    state_components: int = 0

    def validate(self) -> None:
        if self.hidden < 1 or self.layers < 1 or self.members < 1:
            raise ValueError(f"model.plan_head: hidden, layers and members must be >= 1, got {self.hidden}, "
                             f"{self.layers} and {self.members}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"model.plan_head: epochs and batch_size must be >= 1, got {self.epochs} and "
                             f"{self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"model.plan_head: lr must be > 0 and weight_decay >= 0, got {self.lr} and "
                             f"{self.weight_decay}")
        if self.state_components < 0:
            raise ValueError(f"model.plan_head: state_components must be >= 0 (0: the whole hidden state), got "
                             f"{self.state_components}")
