#!/usr/bin/env python3
"""Template checks that cfn-lint and `sam validate` do not make.

cfn-lint accepts an unknown Lambda runtime, a FIFO queue name without `.fifo`, a
misspelt `ReportBatchItemFailures` and an out-of-range BatchSize (see
shared/TOOLING.md); CloudFormation only finds them at deploy time, or never. This
script checks them, plus the project's own rules:

- every Lambda function runs on provided.al2023 and arm64;
- a FIFO queue's name ends in `.fifo` (and only a FIFO queue's does);
- a queue and its dead-letter queue are both FIFO or both standard;
- FunctionResponseTypes is `[ReportBatchItemFailures]`, and an SQS event source
  sets it (the worker answers with batch item failures; without it Lambda ignores
  them and deletes the whole batch);
- an SQS event source's BatchSize is 1..10 on a FIFO queue (1..10000 on a
  standard one, above 10 only with a batching window);
- a queue's VisibilityTimeout is at least 6 x the timeout of every function that
  consumes it, plus its batching window (AWS's advice; less and a message in
  flight is delivered twice).

Values given as `!Ref Parameter` are checked against the parameter's Default.

Usage: check_template.py [TEMPLATE ...]   (default: template.yaml)
       check_template.py --self-test
Exit status: 0 all good, 1 problems found (one line each), 2 unreadable template.
"""

from __future__ import annotations

import json
import sys

import yaml

RUNTIME = "provided.al2023"
ARCHITECTURES = ["arm64"]
RESPONSE_TYPES = ["ReportBatchItemFailures"]
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
DEFAULT_TIMEOUT = 3  # seconds, Lambda's and SAM's default
DEFAULT_VISIBILITY = 30  # seconds, SQS's default
DEFAULT_BATCH_SIZE = 10


class _Loader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref, !Sub, ...) into their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


_Loader.add_multi_constructor("!", _intrinsic)


def ref_target(value) -> str | None:
    """Logical id named by `!Ref X` or `!GetAtt X.Attr`, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        att = value.get("Fn::GetAtt")
        if isinstance(att, str):
            att = att.split(".", 1)
        if isinstance(att, list) and att and isinstance(att[0], str):
            return att[0]
    return None


def text(value) -> str | None:
    """Literal text of a name or ARN (`${...}` left in place); None when it cannot be known."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            if isinstance(sub, list) and sub:
                sub = sub[0]
            return sub if isinstance(sub, str) else None
        join = value.get("Fn::Join")
        if isinstance(join, list) and len(join) == 2 and isinstance(join[1], list):
            parts = [text(part) for part in join[1]]
            if parts and parts[-1] is not None:
                return str(join[0]).join(p if p is not None else "${?}" for p in parts)
    return None


class Checker:
    def __init__(self, doc: dict):
        self.params = doc.get("Parameters") or {}
        self.resources = doc.get("Resources") or {}
        self.globals_fn = (doc.get("Globals") or {}).get("Function") or {}
        self.problems: list[str] = []

    def problem(self, logical_id: str, message: str) -> None:
        self.problems.append(f"{logical_id}: {message}")

    def scalar(self, value):
        """A literal, or the Default of the parameter it `!Ref`s; None when unknown."""
        if isinstance(value, dict):
            param = self.params.get(ref_target(value)) if "Ref" in value else None
            return param.get("Default") if isinstance(param, dict) else None
        return None if isinstance(value, list) else value

    def integer(self, value, default: int) -> int | None:
        if value is None:
            return default
        value = self.scalar(value)
        if isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    def props(self, logical_id: str) -> dict:
        return (self.resources.get(logical_id) or {}).get("Properties") or {}

    def of_type(self, *types: str):
        for logical_id, resource in self.resources.items():
            if isinstance(resource, dict) and resource.get("Type") in types:
                yield logical_id, resource.get("Properties") or {}

    def function_prop(self, logical_id: str, key: str):
        """A function property, falling back to Globals.Function for SAM functions."""
        props = self.props(logical_id)
        if key in props:
            return props[key]
        if self.resources[logical_id].get("Type") == "AWS::Serverless::Function":
            return self.globals_fn.get(key)
        return None

    def is_fifo_queue(self, logical_id: str) -> bool:
        return str(self.scalar(self.props(logical_id).get("FifoQueue"))).lower() == "true"

    def queue_of(self, arn) -> tuple[str | None, bool | None]:
        """(logical id of the queue if it is in this template, whether it is FIFO or None)."""
        target = ref_target(arn)
        if target is not None and (self.resources.get(target) or {}).get("Type") == "AWS::SQS::Queue":
            return target, self.is_fifo_queue(target)
        literal = text(arn)
        if literal is not None and not literal.endswith("}"):
            return None, literal.endswith(".fifo")
        return None, None

    # --- checks ---------------------------------------------------------------

    def check_functions(self) -> None:
        for fn, _ in self.of_type(*FUNCTION_TYPES):
            runtime = self.function_prop(fn, "Runtime")
            if runtime != RUNTIME:
                self.problem(fn, f"Runtime is {runtime!r}; every function must use {RUNTIME}")
            arch = self.function_prop(fn, "Architectures")
            if arch != ARCHITECTURES:
                shown = "absent (x86_64 by default)" if arch is None else repr(arch)
                self.problem(fn, f"Architectures is {shown}; every function must use {ARCHITECTURES}")

    def check_queues(self) -> None:
        for queue, props in self.of_type("AWS::SQS::Queue"):
            fifo = self.is_fifo_queue(queue)
            if "QueueName" in props:
                name = text(props["QueueName"])
                if name is None:
                    self.problem(queue, "QueueName cannot be read (use a literal or !Sub) to check its .fifo suffix")
                elif fifo and not name.endswith(".fifo"):
                    self.problem(queue, f"FIFO queue name {name!r} must end in '.fifo'")
                elif not fifo and name.endswith(".fifo"):
                    self.problem(queue, f"queue name {name!r} ends in '.fifo' but FifoQueue is not true")
            policy = props.get("RedrivePolicy")
            if isinstance(policy, str):
                try:
                    policy = json.loads(policy)
                except ValueError:
                    self.problem(queue, "RedrivePolicy is a string that is not JSON")
                    continue
            if not isinstance(policy, dict) or "deadLetterTargetArn" not in policy:
                continue
            dlq, dlq_fifo = self.queue_of(policy["deadLetterTargetArn"])
            dlq_name = dlq or text(policy["deadLetterTargetArn"])
            if dlq_fifo is None:
                self.problem(queue, "cannot tell whether its dead-letter queue is FIFO (use !GetAtt Queue.Arn)")
            elif dlq_fifo != fifo:
                kind = ("FIFO", "standard") if fifo else ("standard", "FIFO")
                self.problem(queue, f"is a {kind[0]} queue but its dead-letter queue {dlq_name} is {kind[1]}; "
                                    "both must be of the same kind")

    def event_sources(self):
        """(function id, where, properties, queue ARN, is SQS) of every event source worth checking."""
        for fn, props in self.of_type("AWS::Serverless::Function"):
            for name, event in (props.get("Events") or {}).items():
                if not isinstance(event, dict):
                    continue
                eprops = event.get("Properties") or {}
                is_sqs = event.get("Type") == "SQS"
                if is_sqs or "FunctionResponseTypes" in eprops:
                    yield fn, f"{fn}.Events.{name}", eprops, eprops.get("Queue") if is_sqs else None, is_sqs
        for esm, props in self.of_type("AWS::Lambda::EventSourceMapping"):
            fn = ref_target(props.get("FunctionName"))
            arn = props.get("EventSourceArn")
            is_sqs = self.queue_of(arn)[0] is not None or ":sqs:" in (text(arn) or "")
            yield fn, esm, props, arn if is_sqs else None, is_sqs

    def check_event_sources(self) -> None:
        for fn, where, props, queue_arn, is_sqs in self.event_sources():
            types = props.get("FunctionResponseTypes")
            if types is not None and types != RESPONSE_TYPES:
                self.problem(where, f"FunctionResponseTypes is {types!r}; it must be {RESPONSE_TYPES}")
            if not is_sqs:
                continue
            if types is None:
                self.problem(where, f"SQS event source without FunctionResponseTypes: {RESPONSE_TYPES} "
                                    "(batch item failures would be ignored and the whole batch deleted)")
            queue, fifo = self.queue_of(queue_arn)
            batch = self.integer(props.get("BatchSize"), DEFAULT_BATCH_SIZE)
            window = self.integer(props.get("MaximumBatchingWindowInSeconds"), 0)
            if batch is None or window is None:
                self.problem(where, "BatchSize or MaximumBatchingWindowInSeconds cannot be read")
                continue
            if fifo is None:
                self.problem(where, "cannot tell whether the queue is FIFO (use !GetAtt Queue.Arn)")
            elif fifo and not 1 <= batch <= 10:
                self.problem(where, f"BatchSize {batch} is out of range for a FIFO queue (1..10)")
            elif not fifo and not 1 <= batch <= 10000:
                self.problem(where, f"BatchSize {batch} is out of range for a standard queue (1..10000)")
            elif not fifo and batch > 10 and window < 1:
                self.problem(where, f"BatchSize {batch} > 10 needs MaximumBatchingWindowInSeconds >= 1")
            if queue is None:
                continue
            if fn is None or fn not in self.resources:
                self.problem(where, "cannot tell which function consumes the queue (use !Ref or !GetAtt)")
                continue
            timeout = self.integer(self.function_prop(fn, "Timeout"), DEFAULT_TIMEOUT)
            visibility = self.integer(self.props(queue).get("VisibilityTimeout"), DEFAULT_VISIBILITY)
            if timeout is None or visibility is None:
                self.problem(where, f"Timeout of {fn} or VisibilityTimeout of {queue} cannot be read")
            elif visibility < 6 * timeout + window:
                self.problem(queue, f"VisibilityTimeout {visibility}s is below 6 x {fn} Timeout ({timeout}s)"
                                    f" + batching window ({window}s) = {6 * timeout + window}s")

    def run(self) -> list[str]:
        self.check_functions()
        self.check_queues()
        self.check_event_sources()
        return self.problems


def check_text(source: str) -> list[str]:
    doc = yaml.load(source, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError("not a template (top level is not a mapping)")
    return Checker(doc).run()


# --- self-test: each broken template must produce its message; the good one none ---

_GOOD = """
Globals:
  Function: {Runtime: provided.al2023, Architectures: [arm64]}
Parameters:
  Vis: {Type: Number, Default: 180}
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "x-${AWS::StackName}.fifo"
      FifoQueue: true
      VisibilityTimeout: !Ref Vis
      RedrivePolicy: {deadLetterTargetArn: !GetAtt D.Arn, maxReceiveCount: 5}
  D: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}
  W:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 30
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Q.Arn, BatchSize: 10, FunctionResponseTypes: [ReportBatchItemFailures]}
"""

_BAD = [
    ("Runtime is 'provided.al2'", "Resources: {F: {Type: AWS::Serverless::Function, "
                                  "Properties: {Runtime: provided.al2, Architectures: [arm64]}}}"),
    ("Architectures is absent", "Resources: {F: {Type: AWS::Lambda::Function, Properties: {Runtime: provided.al2023}}}"),
    ("must end in '.fifo'", "Resources: {Q: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true, QueueName: q}}}"),
    ("ends in '.fifo' but FifoQueue", "Resources: {Q: {Type: AWS::SQS::Queue, Properties: {QueueName: q.fifo}}}"),
    ("its dead-letter queue D is standard", _GOOD.replace("Properties: {FifoQueue: true}}", "Properties: {}}")),
    ("FunctionResponseTypes is ['ReportBatchItemFailure']",
     _GOOD.replace("[ReportBatchItemFailures]", "[ReportBatchItemFailure]")),
    ("SQS event source without FunctionResponseTypes",
     _GOOD.replace(", FunctionResponseTypes: [ReportBatchItemFailures]", "")),
    ("BatchSize 11 is out of range for a FIFO queue", _GOOD.replace("BatchSize: 10", "BatchSize: 11")),
    ("BatchSize 0 is out of range", _GOOD.replace("BatchSize: 10", "BatchSize: 0")),
    ("VisibilityTimeout 179s is below 6 x W Timeout (30s)", _GOOD.replace("Default: 180", "Default: 179")),
    ("VisibilityTimeout 30s is below", _GOOD.replace("VisibilityTimeout: !Ref Vis", "FifoThroughputLimit: perQueue")),
    ("FunctionResponseTypes is ['Bogus']",
     "Resources: {M: {Type: AWS::Lambda::EventSourceMapping, Properties: {FunctionName: f, "
     "EventSourceArn: 'arn:aws:kinesis:us-east-1:1:stream/s', FunctionResponseTypes: [Bogus]}}}"),
]


def self_test() -> int:
    failures = []
    if check_text(_GOOD):
        failures.append(f"good template reported: {check_text(_GOOD)}")
    for expected, source in _BAD:
        found = check_text(source)
        if not any(expected in line for line in found):
            failures.append(f"expected {expected!r}, got {found}")
    for line in failures:
        print(f"check_template self-test: FAIL {line}", file=sys.stderr)
    print(f"check_template self-test: {len(_BAD) + 1 - len(failures)}/{len(_BAD) + 1} cases pass")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if argv == ["--self-test"]:
        return self_test()
    status = 0
    for path in argv or ["template.yaml"]:
        try:
            with open(path, encoding="utf-8") as handle:
                problems = check_text(handle.read())
        except (OSError, yaml.YAMLError, ValueError) as err:
            print(f"check_template: {path}: cannot read: {err}", file=sys.stderr)
            return 2
        for line in problems:
            print(f"check_template: {path}: {line}", file=sys.stderr)
        if problems:
            status = 1
        print(f"check_template: {path}: {len(problems)} problem(s)")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
