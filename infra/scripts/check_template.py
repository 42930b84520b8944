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
  flight is delivered twice);
- every function has X-Ray tracing Active and a log group (`/aws/lambda/<name>`)
  with RetentionInDays;
- no IAM statement allows Resource "*" except for X-Ray actions (which have no
  resource-level permissions), no action is `*` or a wildcard on sqs:,
  secretsmanager: or ssm:, an ssm: statement names parameters under a path of at
  least one literal level (`parameter/a/b/*`, not `parameter/*`), and no
  NotAction/NotResource; a SAM function with an SQS event
  has its own Role (else SAM attaches AWSLambdaSQSQueueExecutionRole, which may
  receive and delete on every queue of the account);
- a Schedule event's expression is a valid EventBridge rate() or cron(); given as a
  parameter, the parameter has an AllowedPattern and its Default is valid; a function
  on a schedule has ReservedConcurrentExecutions 1 (a run must not overlap the last);
- the link store: a function built from the `worker` binary has RELAY_LINKS_TABLE
  set to `!Ref` a DynamoDB table of the template; that table is PAY_PER_REQUEST,
  keyed pk (S, HASH) / sk (S, RANGE), has TTL enabled on the attribute the code uses
  (TTL_ATTRIBUTE in shared/src/links/dynamo.rs), point-in-time recovery and SSE on,
  and DeletionPolicy and UpdateReplacePolicy Retain; the worker's role allows exactly
  dynamodb:GetItem, PutItem, DeleteItem and Query (no Scan), on that table's
  `!GetAtt Table.Arn` only; no dynamodb: statement anywhere names a resource that is
  not a table of the template;
- every alarm sets TreatMissingData and AlarmActions; an alarm or dashboard metric
  in the relay's own namespace (the MetricsNamespace parameter) names a metric
  the relay emits (EMF_METRICS) with one of its dimension sets; the dashboard
  body is JSON.

Values given as `!Ref Parameter` (also as a `!FindInMap` key) are checked for
every value the parameter can take: each of its AllowedValues, else its Default,
MinValue and MaxValue.

Usage: check_template.py [TEMPLATE ...]   (default: template.yaml)
       check_template.py --self-test
       check_template.py --cargo-lambda-functions TEMPLATE
           prints "LogicalId Binary CodeUri" for each function `sam build` builds
           with BuildMethod rust-cargolambda (test.sh's lambda-build makes the same builds)
Exit status: 0 all good, 1 problems found (one line each), 2 unreadable template.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys

import yaml

RUNTIME = "provided.al2023"
ARCHITECTURES = ["arm64"]
RESPONSE_TYPES = ["ReportBatchItemFailures"]
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
DEFAULT_TIMEOUT = 3  # seconds, Lambda's and SAM's default
DEFAULT_VISIBILITY = 30  # seconds, SQS's default
DEFAULT_BATCH_SIZE = 10
METRICS_NAMESPACE_PARAM = "MetricsNamespace"
# Statements with Resource "*" are allowed only for these (no resource-level permissions).
STAR_RESOURCE_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords",
                         "xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries")
# Services whose actions must be named one by one (no wildcards).
NO_WILDCARD_SERVICES = ("sqs", "secretsmanager", "ssm", "dynamodb")
# An SSM parameter ARN under a literal path: `...:parameter/<level>/.../*` with `*` only last.
SSM_SCOPED_RESOURCE = re.compile(r"^arn:[^:]+:ssm:[^:*]+:[^:*]+:parameter/[^*/]+(/[^*/]+)*(/\*)?$")
# The link store (shared/src/links/dynamo.rs): the worker finds its table in this variable,
# the table's keys, its TTL attribute (read from the code, see code_ttl_attribute) and the
# only calls the worker makes on it.
LINKS_TABLE_ENV = "RELAY_LINKS_TABLE"
WORKER_BINARY = "worker"
LINKS_KEYS = [("pk", "HASH"), ("sk", "RANGE")]
LINKS_TTL_ATTRIBUTE = "expires_at"
LINKS_ACTIONS = frozenset({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"})
DYNAMO_SOURCE = "shared/src/links/dynamo.rs"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# EventBridge schedule expressions: rate(1 unit) / rate(N units), or cron() with six fields.
SCHEDULE_EXPRESSION = re.compile(r"^(rate\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\)"
                                 r"|cron\(\S+ \S+ \S+ \S+ \S+ \S+\))$")

# The metrics the relay writes as CloudWatch Embedded Metric Format lines (shared::metrics),
# each with the dimension sets it is published under.
_STAGE = frozenset({"Stage"})
_STAGE_ENDPOINT = (_STAGE, frozenset({"Stage", "Endpoint"}))
EMF_METRICS: dict[str, tuple[frozenset, ...]] = {
    "Received": (_STAGE,),
    "Rejected": (_STAGE, frozenset({"Stage", "Reason"})),
    "AuthRejected": (_STAGE,),
    "Enqueued": (_STAGE,),
    "Filtered": (_STAGE,),
    "NoRule": (_STAGE,),
    "Applied": (_STAGE, frozenset({"Stage", "Connection", "Action"})),
    "Retried": (_STAGE,),
    "DeadLettered": (_STAGE,),
    "OAuthConsentRequired": (_STAGE,),
    "DeleteCapReached": (_STAGE, frozenset({"Stage", "Connection"})),
    "HandlerLatency": (_STAGE, frozenset({"Stage", "Function"})),
    "ConnectorLatency": (_STAGE, frozenset({"Stage", "Connection"})),
    "ReconcileScanned": _STAGE_ENDPOINT,
    "ReconcileDrift": _STAGE_ENDPOINT,
    "ReconcileEnqueued": _STAGE_ENDPOINT,
    "ReconcileFailed": _STAGE_ENDPOINT,
}


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


def code_ttl_attribute(root: str = ROOT) -> str | None:
    """The TTL attribute the DynamoDB adapter writes (`pub const TTL_ATTRIBUTE: &str = "...";`)."""
    try:
        with open(os.path.join(root, DYNAMO_SOURCE), encoding="utf-8") as handle:
            found = re.search(r'^pub const TTL_ATTRIBUTE: &str = "([^"]+)";', handle.read(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1) if found else None


def truthy(value) -> bool:
    return value is True or str(value).lower() == "true"


class Checker:
    def __init__(self, doc: dict, ttl_attribute: str = LINKS_TTL_ATTRIBUTE):
        self.ttl_attribute = ttl_attribute
        self.params = doc.get("Parameters") or {}
        self.mappings = doc.get("Mappings") or {}
        self.resources = doc.get("Resources") or {}
        self.globals_fn = (doc.get("Globals") or {}).get("Function") or {}
        self.problems: list[str] = []

    def problem(self, logical_id: str, message: str) -> None:
        self.problems.append(f"{logical_id}: {message}")

    def scalar(self, value, env: dict | None = None):
        """A literal, or what a `!Ref`/`!FindInMap` gives with the parameters in `env`
        (others at their Default); None when unknown."""
        env = env or {}
        if isinstance(value, dict):
            if len(value) != 1:
                return None
            if "Ref" in value:
                name = value["Ref"]
                if name in env:
                    return env[name]
                param = self.params.get(name)
                return param.get("Default") if isinstance(param, dict) else None
            args = value.get("Fn::FindInMap")
            if isinstance(args, list) and len(args) == 3:
                keys = [self.scalar(arg, env) for arg in args]
                if any(key is None for key in keys):
                    return None
                try:
                    return self.mappings[str(keys[0])][str(keys[1])][str(keys[2])]
                except (KeyError, TypeError):
                    return None
            return None
        return None if isinstance(value, list) else value

    def integer(self, value, default: int, env: dict | None = None) -> int | None:
        if value is None:
            return default
        value = self.scalar(value, env)
        if isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    def parameters_in(self, value) -> set[str]:
        """Names of the template parameters that `value` refers to with !Ref."""
        if isinstance(value, dict):
            if isinstance(value.get("Ref"), str) and value["Ref"] in self.params:
                return {value["Ref"]}
            return set().union(set(), *(self.parameters_in(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(set(), *(self.parameters_in(v) for v in value))
        return set()

    def parameter_values(self, name: str) -> list:
        """Every value worth checking: the AllowedValues, else Default, MinValue and MaxValue."""
        param = self.params.get(name) or {}
        if isinstance(param.get("AllowedValues"), list):
            return list(param["AllowedValues"])
        values = [param[key] for key in ("Default", "MinValue", "MaxValue") if key in param]
        return values or [None]

    def scenarios(self, *values):
        """One {parameter: value} per combination of the values the parameters used can take."""
        names = sorted(set().union(set(), *(self.parameters_in(v) for v in values)))
        for combo in itertools.product(*(self.parameter_values(n) for n in names)):
            yield {n: v for n, v in zip(names, combo) if v is not None}

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

    @staticmethod
    def when(env: dict) -> str:
        return " when " + ", ".join(f"{k}={v}" for k, v in env.items()) if env else ""

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
            if (fn in self.resources and self.resources[fn].get("Type") == "AWS::Serverless::Function"
                    and self.function_prop(fn, "Role") is None):
                self.problem(where, "SQS event on a function without its own Role: SAM attaches "
                                    "AWSLambdaSQSQueueExecutionRole (receive/delete on every queue); give it a Role")
            queue, fifo = self.queue_of(queue_arn)
            if fifo is None:
                self.problem(where, "cannot tell whether the queue is FIFO (use !GetAtt Queue.Arn)")
            batch_value, window_value = props.get("BatchSize"), props.get("MaximumBatchingWindowInSeconds")
            for env in self.scenarios(batch_value, window_value):
                batch = self.integer(batch_value, DEFAULT_BATCH_SIZE, env)
                window = self.integer(window_value, 0, env)
                if batch is None or window is None:
                    self.problem(where, f"BatchSize or MaximumBatchingWindowInSeconds cannot be read{self.when(env)}")
                elif fifo and not 1 <= batch <= 10:
                    self.problem(where, f"BatchSize {batch} is out of range for a FIFO queue (1..10){self.when(env)}")
                elif fifo is False and not 1 <= batch <= 10000:
                    self.problem(where, f"BatchSize {batch} is out of range for a standard queue (1..10000)"
                                        f"{self.when(env)}")
                elif fifo is False and batch > 10 and window < 1:
                    self.problem(where, f"BatchSize {batch} > 10 needs MaximumBatchingWindowInSeconds >= 1"
                                        f"{self.when(env)}")
            if queue is None:
                continue
            if fn is None or fn not in self.resources:
                self.problem(where, "cannot tell which function consumes the queue (use !Ref or !GetAtt)")
                continue
            timeout_value = self.function_prop(fn, "Timeout")
            visibility_value = self.props(queue).get("VisibilityTimeout")
            for env in self.scenarios(timeout_value, visibility_value, window_value):
                timeout = self.integer(timeout_value, DEFAULT_TIMEOUT, env)
                visibility = self.integer(visibility_value, DEFAULT_VISIBILITY, env)
                window = self.integer(window_value, 0, env) or 0
                if timeout is None or visibility is None:
                    self.problem(where, f"Timeout of {fn} or VisibilityTimeout of {queue} cannot be read"
                                        f"{self.when(env)}")
                elif visibility < 6 * timeout + window:
                    self.problem(queue, f"VisibilityTimeout {visibility}s is below 6 x {fn} Timeout ({timeout}s)"
                                        f" + batching window ({window}s) = {6 * timeout + window}s{self.when(env)}")

    # --- logs and tracing -------------------------------------------------------

    def log_group_names(self) -> dict[str, str]:
        """Literal (`${...}` kept) name of every log group -> its logical id."""
        names = {}
        for group, props in self.of_type("AWS::Logs::LogGroup"):
            name = text(props.get("LogGroupName"))
            if name is not None:
                names[name] = group
        return names

    def check_observability(self) -> None:
        groups = self.log_group_names()
        for fn, _ in self.of_type(*FUNCTION_TYPES):
            if self.resources[fn]["Type"] == "AWS::Serverless::Function":
                tracing = self.function_prop(fn, "Tracing")
            else:
                tracing = (self.props(fn).get("TracingConfig") or {}).get("Mode")
            if tracing != "Active":
                self.problem(fn, f"Tracing is {tracing!r}; every function must have X-Ray tracing Active")
            logging = self.function_prop(fn, "LoggingConfig") or {}
            group = ref_target(logging.get("LogGroup"))
            if group is None:
                candidates = [f"/aws/lambda/${{{fn}}}"]
                if "LogGroup" in logging and text(logging["LogGroup"]) is not None:
                    candidates.append(text(logging["LogGroup"]))
                elif text(self.props(fn).get("FunctionName")) is not None:
                    candidates.append("/aws/lambda/" + text(self.props(fn)["FunctionName"]))
                group = next((groups[c] for c in candidates if c in groups), None)
            if group is None or group not in self.resources:
                self.problem(fn, "has no log group in the template (AWS::Logs::LogGroup named /aws/lambda/<name>);"
                                 " Lambda would create one that keeps logs forever")
            elif self.props(group).get("RetentionInDays") is None:
                self.problem(group, f"log group of {fn} has no RetentionInDays")

    # --- IAM --------------------------------------------------------------------

    def statements(self):
        """(where, statement) of every IAM policy statement written in the template."""
        def of_document(where, document):
            document = document if isinstance(document, dict) else {}
            statements = document.get("Statement") or []
            for i, statement in enumerate(statements if isinstance(statements, list) else [statements]):
                # `!If [cond, statement, !Ref AWS::NoValue]`: check each branch.
                if isinstance(statement, dict) and list(statement) == ["Fn::If"]:
                    branches = statement["Fn::If"][1:] if isinstance(statement["Fn::If"], list) else []
                    for branch in branches:
                        if isinstance(branch, dict) and "Ref" not in branch:
                            sid = f" ({branch['Sid']})" if "Sid" in branch else ""
                            yield f"{where}.Statement[{i}]{sid}", branch
                    continue
                if isinstance(statement, dict):
                    sid = f" ({statement['Sid']})" if "Sid" in statement else ""
                    yield f"{where}.Statement[{i}]{sid}", statement

        for role, props in self.of_type("AWS::IAM::Role"):
            for policy in props.get("Policies") or []:
                if isinstance(policy, dict):
                    name = policy.get("PolicyName", "Policies")
                    yield from of_document(f"{role}.{name}", policy.get("PolicyDocument"))
        for pol, props in self.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield from of_document(pol, props.get("PolicyDocument"))
        for fn, props in self.of_type("AWS::Serverless::Function"):
            policies = props.get("Policies")
            for policy in policies if isinstance(policies, list) else [policies]:
                if isinstance(policy, dict) and "Statement" in policy:
                    yield from of_document(f"{fn}.Policies", policy)

    def check_iam(self) -> None:
        for where, statement in self.statements():
            if statement.get("Effect", "Allow") != "Allow":
                continue
            if "NotAction" in statement or "NotResource" in statement:
                self.problem(where, "NotAction/NotResource in an Allow statement grants more than it names")
                continue
            actions = statement.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            resources = statement.get("Resource")
            resources = resources if isinstance(resources, list) else [resources]
            for action in actions:
                if not isinstance(action, str):
                    continue
                service = action.split(":", 1)[0].lower()
                if action == "*" or ("*" in action and service in NO_WILDCARD_SERVICES):
                    self.problem(where, f"wildcard action {action!r}: name each action it needs")
            if "*" in resources and not all(a in STAR_RESOURCE_ACTIONS for a in actions):
                others = [a for a in actions if a not in STAR_RESOURCE_ACTIONS]
                self.problem(where, f"Resource '*' for {others}: name the resources (only X-Ray may use '*')")
            elif any(isinstance(a, str) and a.lower().startswith("ssm:") for a in actions):
                for resource in resources:
                    arn = text(resource)
                    literal = re.sub(r"\$\{[^}]*\}", "x", arn) if arn is not None else None
                    if literal is None or not SSM_SCOPED_RESOURCE.match(literal):
                        self.problem(where, f"ssm: resource {arn or resource!r} is not a parameter path "
                                            "(arn:...:parameter/<path>/*)")

    # --- the link store (DynamoDB) -----------------------------------------------

    def is_table(self, logical_id) -> bool:
        return (self.resources.get(logical_id) or {}).get("Type") == "AWS::DynamoDB::Table"

    def role_statements(self, role: str):
        prefix = f"{role}."
        return [(where, st) for where, st in self.statements() if where.startswith(prefix)]

    def check_links_table(self, table: str) -> None:
        resource = self.resources[table]
        props = resource.get("Properties") or {}
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if resource.get(policy) != "Retain":
                self.problem(table, f"{policy} is {resource.get(policy)!r}; the link store must be Retain "
                                    "(its parked events exist nowhere else)")
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            self.problem(table, f"BillingMode is {props.get('BillingMode')!r}; the link store is PAY_PER_REQUEST")
        keys = [(k.get("AttributeName"), k.get("KeyType")) for k in props.get("KeySchema") or []
                if isinstance(k, dict)]
        types = {a.get("AttributeName"): a.get("AttributeType") for a in props.get("AttributeDefinitions") or []
                 if isinstance(a, dict)}
        if keys != LINKS_KEYS or any(types.get(name) != "S" for name, _ in LINKS_KEYS):
            self.problem(table, f"KeySchema {keys} with types {types}; the code reads "
                                f"{LINKS_KEYS} of type S (shared/src/links/dynamo.rs)")
        ttl = props.get("TimeToLiveSpecification") or {}
        if not truthy(ttl.get("Enabled")) or ttl.get("AttributeName") != self.ttl_attribute:
            self.problem(table, f"TimeToLiveSpecification is {ttl or None}; it must be enabled on "
                                f"{self.ttl_attribute!r}, the attribute the code writes")
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if not truthy(pitr.get("PointInTimeRecoveryEnabled")):
            self.problem(table, "point-in-time recovery is off (PointInTimeRecoverySpecification)")
        if not truthy((props.get("SSESpecification") or {}).get("SSEEnabled")):
            self.problem(table, "SSESpecification.SSEEnabled is not true")

    def check_links(self) -> None:
        tables = set()
        for fn, props in self.of_type("AWS::Serverless::Function"):
            binary = ((self.resources[fn].get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
            variables = dict(((self.globals_fn.get("Environment") or {}).get("Variables") or {}))
            variables.update((props.get("Environment") or {}).get("Variables") or {})
            value = variables.get(LINKS_TABLE_ENV)
            if value is None and binary != WORKER_BINARY:
                continue
            table = ref_target(value) if isinstance(value, dict) and "Ref" in value else None
            if table is None or not self.is_table(table):
                self.problem(fn, f"{LINKS_TABLE_ENV} is {value!r}, not !Ref a DynamoDB table of the template "
                                 "(the worker would keep its links in memory)")
                continue
            tables.add(table)
            role = ref_target(self.function_prop(fn, "Role"))
            if role is None or (self.resources.get(role) or {}).get("Type") != "AWS::IAM::Role":
                self.problem(fn, f"uses {table} without a Role of this template that grants it")
                continue
            actions: set[str] = set()
            for where, statement in self.role_statements(role):
                acts = statement.get("Action")
                acts = [a for a in (acts if isinstance(acts, list) else [acts])
                        if isinstance(a, str) and a.lower().startswith("dynamodb:")]
                if not acts:
                    continue
                actions.update(acts)
                resources = statement.get("Resource")
                resources = resources if isinstance(resources, list) else [resources]
                for resource in resources:
                    att = resource.get("Fn::GetAtt") if isinstance(resource, dict) else None
                    if ref_target(resource) != table or not isinstance(att, list) or att[1:] != ["Arn"]:
                        self.problem(where, f"dynamodb: resource {text(resource) or resource!r} is not "
                                            f"!GetAtt {table}.Arn (the link store only)")
            if actions != LINKS_ACTIONS:
                self.problem(role, f"grants {fn} the dynamodb: actions {sorted(actions)}; the link store needs "
                                   f"exactly {sorted(LINKS_ACTIONS)}")
        for table in sorted(tables):
            self.check_links_table(table)
        # Anywhere else: a dynamodb: statement names tables of this template, nothing wider.
        for where, statement in self.statements():
            acts = statement.get("Action")
            acts = acts if isinstance(acts, list) else [acts]
            if not any(isinstance(a, str) and a.lower().startswith("dynamodb:") for a in acts):
                continue
            resources = statement.get("Resource")
            for resource in resources if isinstance(resources, list) else [resources]:
                if resource != "*" and not self.is_table(ref_target(resource)):
                    self.problem(where, f"dynamodb: resource {text(resource) or resource!r} is not a table "
                                        "of this template (!GetAtt Table.Arn)")

    # --- schedules --------------------------------------------------------------

    def check_schedules(self) -> None:
        for fn, props in self.of_type("AWS::Serverless::Function"):
            scheduled = False
            for name, event in (props.get("Events") or {}).items():
                if not isinstance(event, dict) or event.get("Type") != "Schedule":
                    continue
                scheduled = True
                where = f"{fn}.Events.{name}"
                expression = (event.get("Properties") or {}).get("Schedule")
                param = ref_target(expression) if isinstance(expression, dict) and "Ref" in expression else None
                if param is not None:
                    spec = self.params.get(param)
                    if not isinstance(spec, dict):
                        self.problem(where, f"Schedule refers to {param}, which is not a parameter")
                        continue
                    if "AllowedPattern" not in spec:
                        self.problem(param, "schedule parameter without an AllowedPattern (a typo would "
                                            "only fail at deploy time)")
                    elif not re.fullmatch(str(spec["AllowedPattern"]), str(spec.get("Default"))):
                        self.problem(param, f"Default {spec.get('Default')!r} does not match its AllowedPattern")
                    expression = spec.get("Default")
                    where = f"{param}.Default"
                if not isinstance(expression, str) or not SCHEDULE_EXPRESSION.match(expression):
                    self.problem(where, f"{expression!r} is not an EventBridge rate() or cron() expression")
            if scheduled and self.integer(self.function_prop(fn, "ReservedConcurrentExecutions"), 0) != 1:
                self.problem(fn, "runs on a schedule without ReservedConcurrentExecutions: 1 "
                                 "(a slow run would overlap the next)")

    # --- alarms and dashboard ---------------------------------------------------

    def is_relay_namespace(self, namespace) -> bool:
        if ref_target(namespace) == METRICS_NAMESPACE_PARAM and "Ref" in namespace:
            return True
        default = (self.params.get(METRICS_NAMESPACE_PARAM) or {}).get("Default")
        return isinstance(namespace, str) and namespace in (default, "${" + METRICS_NAMESPACE_PARAM + "}")

    def check_relay_metric(self, where: str, name, dimensions) -> None:
        if name not in EMF_METRICS:
            self.problem(where, f"metric {name!r} is not a metric the relay emits ({', '.join(EMF_METRICS)})")
            return
        dims = frozenset(dimensions)
        if dims not in EMF_METRICS[name]:
            sets = " or ".join(str(sorted(d)) for d in EMF_METRICS[name])
            self.problem(where, f"metric {name} has dimensions {sorted(dims)}; the relay publishes it with {sets}")

    def check_alarms(self) -> None:
        for alarm, props in self.of_type("AWS::CloudWatch::Alarm"):
            if props.get("TreatMissingData") is None:
                self.problem(alarm, "no TreatMissingData (say what a quiet period means: notBreaching)")
            if not props.get("AlarmActions"):
                self.problem(alarm, "no AlarmActions: nobody would hear of it")
            metrics = [(alarm, props)]
            for i, query in enumerate(props.get("Metrics") or []):
                metric = ((query or {}).get("MetricStat") or {}).get("Metric")
                if isinstance(metric, dict):
                    metrics.append((f"{alarm}.Metrics[{i}]", metric))
            for where, metric in metrics:
                if "MetricName" in metric and self.is_relay_namespace(metric.get("Namespace")):
                    dims = [d.get("Name") for d in metric.get("Dimensions") or [] if isinstance(d, dict)]
                    self.check_relay_metric(where, metric["MetricName"], dims)

    def check_dashboards(self) -> None:
        marker = "${" + METRICS_NAMESPACE_PARAM + "}"
        for dash, props in self.of_type("AWS::CloudWatch::Dashboard"):
            body = text(props.get("DashboardBody"))
            if body is None:
                continue
            # ${X} -> a placeholder string character-for-character safe inside JSON strings.
            body = re.sub(r"\$\{(?!!)[^}]*\}", lambda m: "@NS@" if m.group(0) == marker else "x", body)
            try:
                doc = json.loads(body)
            except ValueError as err:
                self.problem(dash, f"DashboardBody is not JSON: {err}")
                continue
            for w, widget in enumerate(doc.get("widgets") or []):
                rows = ((widget or {}).get("properties") or {}).get("metrics") or []
                previous: list = []
                for r, row in enumerate(rows):
                    if not isinstance(row, list):
                        continue
                    items = [i for i in row if not isinstance(i, dict)]
                    if any(isinstance(i, dict) and "expression" in i for i in row):
                        previous = []
                        continue
                    items = [previous[k] if i == "." and k < len(previous) else i for k, i in enumerate(items)]
                    previous = items
                    if len(items) >= 2 and (items[0] == "@NS@" or self.is_relay_namespace(items[0])):
                        self.check_relay_metric(f"{dash}.widgets[{w}].metrics[{r}]", items[1], items[2::2])

    def run(self) -> list[str]:
        self.check_functions()
        self.check_queues()
        self.check_event_sources()
        self.check_observability()
        self.check_iam()
        self.check_links()
        self.check_schedules()
        self.check_alarms()
        self.check_dashboards()
        return self.problems


def check_text(source: str, ttl_attribute: str = LINKS_TTL_ATTRIBUTE) -> list[str]:
    doc = yaml.load(source, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError("not a template (top level is not a mapping)")
    return Checker(doc, ttl_attribute).run()


def cargo_lambda_functions(source: str) -> list[tuple[str, str, str]]:
    """(logical id, Binary, CodeUri) of each function `sam build` builds with cargo lambda."""
    doc = yaml.load(source, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError("not a template (top level is not a mapping)")
    found = []
    for logical_id, resource in (doc.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        metadata = resource.get("Metadata") or {}
        if metadata.get("BuildMethod") != "rust-cargolambda":
            continue
        binary = (metadata.get("BuildProperties") or {}).get("Binary")
        code_uri = (resource.get("Properties") or {}).get("CodeUri")
        if not isinstance(binary, str) or not isinstance(code_uri, str):
            raise ValueError(f"{logical_id}: rust-cargolambda needs BuildProperties.Binary and a CodeUri path")
        for value in (logical_id, binary, code_uri):
            if not value or any(c.isspace() for c in value):
                raise ValueError(f"{logical_id}: {value!r} is empty or has white space")
        found.append((logical_id, binary, code_uri))
    return found


def main(argv: list[str]) -> int:
    if argv == ["--self-test"]:
        from check_template_cases import self_test  # the cases import this module

        return self_test()
    if len(argv) == 2 and argv[0] == "--cargo-lambda-functions":
        # One "LogicalId Binary CodeUri" line per function (infra/scripts/test.sh's lambda-build).
        try:
            with open(argv[1], encoding="utf-8") as handle:
                functions = cargo_lambda_functions(handle.read())
        except (OSError, yaml.YAMLError, ValueError) as err:
            print(f"check_template: {argv[1]}: {err}", file=sys.stderr)
            return 2
        for line in functions:
            print(" ".join(line))
        return 0
    status = 0
    ttl_attribute = code_ttl_attribute()
    if ttl_attribute is None:
        print(f"check_template: cannot find `pub const TTL_ATTRIBUTE` in {DYNAMO_SOURCE}", file=sys.stderr)
        return 2
    for path in argv or ["template.yaml"]:
        try:
            with open(path, encoding="utf-8") as handle:
                problems = check_text(handle.read(), ttl_attribute)
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
