"""CloudFormation's rendering of a resource, replayed as the AWS API call it stands for.

moto's CloudFormation skips some resource types (Secrets Manager secrets, Application Auto
Scaling, security group egress rules) and passes others on only in part (a task definition
keeps its containers but loses its network mode, CPU and roles). For those, the tests resolve
the template's intrinsic functions the way CloudFormation does, turn the properties into the
input of the API operation behind the resource, check it against botocore's model of that
operation, and make the call on moto.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore.model import Shape
from botocore.validate import validate_parameters
from cfnlint.decode import decode

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def load_template(path: Path) -> dict[str, Any]:
    parsed, matches = decode(str(path))
    assert not matches, matches
    plain: dict[str, Any] = json.loads(json.dumps(parsed))
    return plain


@dataclass
class Rendering:
    """One stack's template with its parameters and its resources' physical ids and attributes."""

    template: dict[str, Any]
    parameters: Mapping[str, str] = field(default_factory=dict)
    references: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    stack_name: str = "stack"

    def properties(self, logical_id: str) -> dict[str, Any]:
        resolved: dict[str, Any] = self.resolve(
            self.template["Resources"][logical_id]["Properties"]
        )
        return resolved

    def condition(self, name: str) -> bool:
        return bool(self._condition(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self._ref(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = (
                argument.split(".", 1) if isinstance(argument, str) else argument
            )
            return self.attributes[(logical_id, attribute)]
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::Join":
            delimiter, items = argument
            return delimiter.join(self.resolve(items))
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        raise NotImplementedError(name)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self._parameter(name)
        return self.references[name]

    def _parameter(self, name: str) -> Any:
        declared = self.template["Parameters"][name]
        value = str(self.parameters.get(name, declared.get("Default", "")))
        kind = declared["Type"]
        # Number parameters stay strings, as in CloudFormation; the API shape converts them.
        is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
        return value.split(",") if is_list else value

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return str(self.attributes[tuple(name.split(".", 1))])
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _condition(self, expression: Any) -> bool:
        ((name, argument),) = expression.items()
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return bool(left == right)
        if name == "Fn::Not":
            return not self._condition(argument[0])
        if name == "Fn::And":
            return all(self._condition(item) for item in argument)
        if name == "Fn::Or":
            return any(self._condition(item) for item in argument)
        raise NotImplementedError(name)


def api_input(service: str, operation: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's input for resolved resource properties, valid by botocore's model.

    CloudFormation spells the API's members with a capital first letter (``containerPort``
    is ``ContainerPort``) and converts strings to the member's type; map keys (log driver
    options) stay as they are. A property the operation has no member for fails here rather
    than being dropped.
    """
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    params: dict[str, Any] = _to_shape(properties, shape, operation)
    validate_parameters(params, shape)
    return params


def _to_shape(value: Any, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        members = {name[:1].upper() + name[1:]: name for name in shape.members}
        unknown = sorted(set(value) - set(members))
        assert not unknown, f"{path}: no API member for {unknown}"
        return {
            members[key]: _to_shape(item, shape.members[members[key]], f"{path}.{key}")
            for key, item in value.items()
        }
    if kind == "list":
        return [_to_shape(item, shape.member, f"{path}[]") for item in value]
    if kind == "map":
        return {key: _to_shape(item, shape.value, f"{path}.{key}") for key, item in value.items()}
    return _scalar(value, kind)


def _scalar(value: Any, kind: str) -> Any:
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value
