"""`lambdamesh cost`: what a mesh costs a month at list prices, beside Cloud Map.

One module per job: `inputs` declares what the command is told (each input once, with its
flag, help and range), `traffic` counts what the mesh does a month and `eureka` what its
Eureka clients do, `model` prices it from
`lambdamesh.prices`, `render` prints it and `command` is the argparse edge. The figures are
a model, not a bill: every input that is a guess is a field with a default and a flag, and
`ASSUMPTIONS` says what is left out.
"""

from __future__ import annotations

from lambdamesh.cost.command import add_cost_command, cost_command, inputs_from_args
from lambdamesh.cost.inputs import CostInputError, CostInputs, Input, declared, problems
from lambdamesh.cost.model import (
    ASSUMPTIONS,
    Breakdown,
    Line,
    estimate,
    per_eureka_client,
    per_instance,
    per_instance_heartbeat,
    per_mesh_sidecar,
    tiered,
)
from lambdamesh.cost.render import render, render_markdown, to_json
from lambdamesh.cost.traffic import issues_a_month, polls_a_month, warm_lambdas

__all__ = [
    "ASSUMPTIONS",
    "Breakdown",
    "CostInputError",
    "CostInputs",
    "Input",
    "Line",
    "add_cost_command",
    "cost_command",
    "declared",
    "estimate",
    "inputs_from_args",
    "issues_a_month",
    "per_eureka_client",
    "per_instance",
    "per_instance_heartbeat",
    "per_mesh_sidecar",
    "polls_a_month",
    "problems",
    "render",
    "render_markdown",
    "tiered",
    "to_json",
    "warm_lambdas",
]
