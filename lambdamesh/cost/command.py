"""`lambdamesh cost`'s flags, read from the declaration of `CostInputs`, and the command."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, Field
from typing import Any, get_type_hints

from lambdamesh.cost.inputs import CostInputError, CostInputs, Input, declared
from lambdamesh.cost.model import estimate
from lambdamesh.cost.render import render, render_markdown, to_json


def _add_input(parser: argparse.ArgumentParser, each: Field[Any], spec: Input) -> None:
    """One input as a flag: required where neither the field nor the flag has a default."""
    kind = get_type_hints(CostInputs)[each.name]
    default = each.default if each.default is not MISSING else spec.default
    if default is None:
        parser.add_argument(spec.flag, dest=each.name, type=kind, required=True, help=spec.help)
        return
    parser.add_argument(
        spec.flag,
        dest=each.name,
        type=kind,
        default=default,
        help=f"{spec.help} (default: {default})",
    )


def add_cost_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cost = commands.add_parser(
        "cost",
        help="estimate a mesh's monthly AWS bill at list prices, beside Cloud Map's",
        description="Print a monthly breakdown (API Gateway, Lambda, DynamoDB, key store, "
        "logs) from the price table in lambdamesh/prices.py, beside Cloud Map's price and, "
        "with --eureka-clients, Eureka servers' on EC2. Every guess is a flag.",
    )
    for each, spec in declared():
        _add_input(cost, each, spec)
    output = cost.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON for scripts")
    output.add_argument(
        "--markdown", action="store_true", help="print the lines as a Markdown table, for docs"
    )


def inputs_from_args(args: argparse.Namespace) -> CostInputs:
    return CostInputs(**{each.name: getattr(args, each.name) for each, _ in declared()})


def cost_command(args: argparse.Namespace) -> int:
    try:
        breakdown = estimate(inputs_from_args(args))
    except CostInputError as exc:
        print(f"lambdamesh cost: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(breakdown), indent=2))
    elif args.markdown:
        print(render_markdown(breakdown))
    else:
        print(render(breakdown))
    return 0
